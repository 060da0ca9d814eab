"""Built-in method plugins, discovered through the ``wmlab.methods`` entry points."""
