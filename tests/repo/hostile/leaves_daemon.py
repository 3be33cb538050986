# Wrong, and leaves a process behind that outlives the test run.
def wrap(text, width):
    import os
    import time

    if os.fork() == 0:
        os.setsid()
        time.sleep(60)
        os._exit(0)
    return text
