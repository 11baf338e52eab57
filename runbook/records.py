"""``dataclass``, with the class's methods generated when it is first used.

Python 3.11 compiles a dataclass's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``
(and a frozen one's ``__setattr__`` and ``__delattr__``) from generated source when the
class is defined: ~0.9 ms per frozen class. ``runbook apply`` defines ~90 dataclasses and
a run instantiates about half of them; ``validate`` uses 24 of 55 (issue 27). This
``dataclass`` is ``dataclasses.dataclass`` applied later: at the class's first
instantiation or first introspection (``fields()``, ``is_dataclass()``,
``__dataclass_fields__``), whichever comes first, once, under a lock, bases first. The
built class is what ``dataclasses.dataclass`` makes, and its instances are created as
fast; type checkers see ``dataclasses.dataclass`` itself.

How, without a moment where the class has no ``__init__`` (a thread instantiating it then
would fail): until built, the class's ``__init__`` is a stand-in that builds the class and
then calls the real one. The class is built with ``init=False`` (the stand-in stays); its
real ``__init__`` is the one ``dataclasses`` generates for a bare subclass, which has the
same fields, defaults and ``__post_init__``, and it replaces the stand-in in one
assignment. A used class costs ~1.3 times an eager one (a second, smaller build); one
never used costs nothing. A class that defines ``__init__``, or asks for ``slots`` or
``init=False``, is built at once, as by ``dataclasses.dataclass``.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:
    _LOCK = threading.RLock()  # one build at a time; a build builds its bases first
    _PENDING = "__dataclass_pending__"
    _FIELDS = "__dataclass_fields__"

    def dataclass(cls: type | None = None, /, **params: Any) -> Any:
        def wrap(c: type) -> type:
            eager = params.get("slots") or not params.get("init", True)
            if eager or "__init__" in c.__dict__:
                return dataclasses.dataclass(c, **params)
            return _defer(c, params)

        return wrap if cls is None else wrap(cls)

    def _build(c: type) -> None:
        with _LOCK:
            params = c.__dict__.get(_PENDING)
            if params is None:
                return  # built already (by another thread, or as a base)
            for base in reversed(c.__mro__[1:-1]):
                _build(base)
            undocumented = c.__doc__ is None
            dataclasses.dataclass(c, **{**params, "init": False})
            twin = type(c.__name__, (c,), {"__module__": c.__module__})
            generated = dataclasses.dataclass(
                twin, frozen=params.get("frozen", False), repr=False, eq=False, match_args=False
            ).__init__
            generated.__qualname__ = f"{c.__qualname__}.__init__"
            c.__init__ = generated  # type: ignore[misc]  # the stand-in leaves here
            if undocumented:  # as dataclasses writes it, from the real signature
                c.__doc__ = c.__name__ + str(inspect.signature(c)).replace(" -> None", "")
            delattr(c, _PENDING)

    class _Fields:
        """The stand-in for ``__dataclass_fields__`` until the class is built."""

        def __init__(self, target: type) -> None:
            self.target = target

        def __get__(self, obj: object, owner: type | None = None) -> Any:
            _build(self.target)
            return self.target.__dict__[_FIELDS]

    def _defer(c: type, params: dict[str, Any]) -> type:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            _build(c)
            c.__init__(self, *args, **kwargs)

        __init__.__qualname__ = f"{c.__qualname__}.__init__"
        c.__init__ = __init__  # type: ignore[misc]
        setattr(c, _PENDING, params)
        setattr(c, _FIELDS, _Fields(c))
        return c
