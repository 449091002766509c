"""From rows to the public representations the routes return, one module per resource."""
