"""Small TOML-backed records (sites, environments)."""

import dataclasses
import tomllib

import tomli_w

from ..errors import ConfigError


class Record:
    """A dataclass mixin: ``load(path)`` and ``dumps()`` as TOML."""

    @classmethod
    def load(cls, path):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            fields = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                          for k, v in data.items() if k in fields})
        except (OSError, tomllib.TOMLDecodeError, TypeError) as e:
            raise ConfigError(f"{path}: corrupt record: {e}") from None

    def dumps(self):
        data = {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items() if v is not None}
        return tomli_w.dumps(data)
