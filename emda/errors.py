"""The one exception type emda shows to users as a single line."""


class EmdaError(Exception):
    """A problem the user can fix: bad input, a missing file, a wrong option.

    The CLI prints ``error: <message>`` on one line and exits non-zero; the
    message must name the file or option at fault and, where useful, what to do.
    """
