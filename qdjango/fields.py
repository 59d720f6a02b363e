"""A binary column holding a pickled value, as the engine writes it."""

from __future__ import annotations

from typing import Any

from django.db import models

from qengine.store import dumps, loads


class PickledField(models.BinaryField):
    """Pickled Python values in the engine's binary columns (``args``, ``result``…).

    The engine writes these columns too, so both sides must pickle the same
    way; values are read back only from our own store, never from a broker.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else loads(bytes(value))

    def get_prep_value(self, value: Any) -> Any:
        if value is None and self.null:
            return None
        return dumps(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        return None if value is None else connection.Database.Binary(value)

    def to_python(self, value: Any) -> Any:
        return value

    def value_to_string(self, obj: Any) -> str:
        return repr(self.value_from_object(obj))
