"""Input and output trees: walking folders by descriptor, local and URI storage, and the plan of
which file goes where (the rules that keep every input untouched and every write inside OUT)."""
