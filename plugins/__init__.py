"""kbtool's built-in plugins, loaded through the same hooks as third-party plugins."""
