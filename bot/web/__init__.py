"""The web console: an edge adapter that shows the business and calls the same services as the chat."""
