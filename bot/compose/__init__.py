"""How ``coo run`` is put together once it polls: the composition root (:mod:`bot.compose.root`) and its
parts (the model and memory, actions and goals)."""
