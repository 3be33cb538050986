# Correct, with a docstring whose blank lines and indentation must survive re-indenting.
def wrap(text, width):
    """
    A word-wrap function that preserves existing line breaks.


        (an indented line, and two blank lines above it)
    """
    import textwrap

    wrapper = textwrap.TextWrapper(width=width, break_long_words=False,
                                   break_on_hyphens=False, replace_whitespace=False)

    result = []
    for line in text.splitlines():
        result.extend(wrapper.wrap(line) or [line])
    if text.endswith("\n"):
        result.append("")
    return "\n".join(result)
