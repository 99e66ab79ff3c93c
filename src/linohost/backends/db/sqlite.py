"""SQLite: the database is a file in the project directory; nothing to create."""


class SQLite:
    engine = "sqlite"
    server = False

    def __init__(self, cfg):
        pass

    def check(self):
        pass

    def exists(self, name):
        return False

    def create(self, name, password):
        pass

    def drop(self, name):
        pass
