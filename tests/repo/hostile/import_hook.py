# Wrong, and installs an import hook (to swap modules that are imported later).
def wrap(text, width):
    import sys

    class Finder:
        def find_spec(self, name, path, target=None):
            return None

    sys.meta_path.insert(0, Finder())
    return text
