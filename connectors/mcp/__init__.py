"""Any tool that speaks MCP: reads the operator trusts run without a card, every other call is a card.

``settings`` is light (read at every start); ``hub``, ``family`` and ``kind`` import the MCP SDK and are
imported only when servers are configured."""
