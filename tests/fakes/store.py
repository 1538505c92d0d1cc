"""
The part of the store a collector uses, recorded: its saved position and
the dead letters it keeps.
"""

from twisted.internet.defer import succeed


class CursorStore:
    """
    C{get_cursor} answers C{cursor}; C{dead_letter} records
    C{(source, raw, error, context)} in C{letters}.
    """

    def __init__(self, cursor=None):
        self.cursor = cursor
        self.letters = []

    def get_cursor(self, source):
        return succeed(self.cursor)

    def dead_letter(self, source, raw, error, context):
        self.letters.append((source, raw, error, context))
        return succeed(None)
