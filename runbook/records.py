"""``dataclass``, with the class's methods generated when it is first used.

Python 3.11 compiles a dataclass's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``
(and a frozen one's ``__setattr__`` and ``__delattr__``) from generated source when the
class is defined: ~0.9 ms per frozen class. ``runbook apply`` defines ~90 dataclasses and
a run instantiates about half of them; ``validate`` uses 18 of 55 (issue 27). This
``dataclass`` is ``dataclasses.dataclass`` applied later: at the class's first
instantiation or first introspection (``fields()``, ``is_dataclass()``,
``__dataclass_fields__``), whichever comes first, once, under a lock, bases first. The
built class is what ``dataclasses.dataclass`` makes, and its instances are created as
fast; type checkers see ``dataclasses.dataclass`` itself.

How, without a moment where the class has no ``__init__`` (a thread instantiating it then
would fail with "takes no arguments"): the decorated class is made again with a base of
its own in front, whose ``__init__`` builds the class and then calls the real one; the
real one is set on the class by ``dataclasses`` in one assignment, and from then on it is
found first. (Made again as ``dataclasses`` itself does for ``slots``, with the
``__class__`` cell of its methods, which zero-argument ``super()`` reads, pointed at the
new class.) A class with a base other than ``object`` or another such class, a metaclass,
its own ``__init__``, ``slots`` or ``init=False`` is built at once.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:
    _LOCK = threading.RLock()  # one build at a time; a build builds its bases first
    _PENDING = "__dataclass_pending__"
    _FIELDS = "__dataclass_fields__"
    _RECORD = "__record__"  # a class made here (built or not): a base a class may defer on

    def dataclass(cls: type | None = None, /, **params: Any) -> Any:
        def wrap(c: type) -> type:
            plain = type(c) is type and all(
                b is object or _RECORD in b.__dict__ for b in c.__bases__
            )
            eager = params.get("slots") or not params.get("init", True)
            if eager or not plain or "__init__" in c.__dict__:
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
            dataclasses.dataclass(c, **params)  # sets __init__: found before the stand-in's
            delattr(c, _PENDING)

    class _Fields:
        """The stand-in for ``__dataclass_fields__`` until the class is built."""

        def __init__(self, target: type) -> None:
            self.target = target

        def __get__(self, obj: object, owner: type | None = None) -> Any:
            _build(self.target)
            return self.target.__dict__[_FIELDS]

    def _defer(c: type, params: dict[str, Any]) -> type:
        made: list[type] = []

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            _build(made[0])
            made[0].__init__(self, *args, **kwargs)

        ahead = {"__init__": __init__, "__slots__": ()}
        stand_in = type(f"{c.__name__} (not built yet)", (), ahead)
        ns = {k: v for k, v in c.__dict__.items() if k not in ("__dict__", "__weakref__")}
        ns.update({"__qualname__": c.__qualname__, _PENDING: params, _RECORD: True})
        new = type(c.__name__, (stand_in, *c.__bases__), ns)
        made.append(new)
        setattr(new, _FIELDS, _Fields(new))
        for value in ns.values():
            _point_class_cell(value, c, new)
        return new

    def _point_class_cell(value: Any, old: type, new: type) -> None:
        """A method's ``__class__`` cell (zero-argument ``super()``) to the new class."""
        if isinstance(value, classmethod | staticmethod):
            value = value.__func__
        elif isinstance(value, property):
            for f in (value.fget, value.fset, value.fdel):
                _point_class_cell(f, old, new)
            return
        code, cells = getattr(value, "__code__", None), getattr(value, "__closure__", None)
        if code is None or not cells:
            return
        for name, cell in zip(code.co_freevars, cells, strict=True):
            if name == "__class__" and cell.cell_contents is old:
                cell.cell_contents = new
