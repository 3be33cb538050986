# Never returns.
def wrap(text, width):
    while True:
        pass
