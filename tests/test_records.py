"""``runbook.records.dataclass``: built on first use, and then the very class
``dataclasses.dataclass`` makes — compared here with one built eagerly, feature by feature."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import InitVar, field
from typing import Any

import pytest

from runbook.records import dataclass


def _pair(body: dict[str, Any], annotations: dict[str, Any], **params: Any) -> tuple[type, type]:
    """The same class twice: built by ``dataclasses`` now, and by ``records`` on use."""
    made = []
    for deco in (dataclasses.dataclass, dataclass):
        ns = {"__annotations__": dict(annotations), "__module__": __name__, **body}
        made.append(deco(**params)(type("Point", (), ns)))
    return made[0], made[1]


def _pending(cls: type) -> bool:
    return "__dataclass_pending__" in cls.__dict__


def test_nothing_is_generated_until_the_class_is_used() -> None:
    @dataclass(frozen=True)
    class Late:
        a: int

    assert _pending(Late)
    assert "__repr__" not in Late.__dict__ and "__eq__" not in Late.__dict__
    assert Late(1) == Late(1)
    assert not _pending(Late)
    assert "__repr__" in Late.__dict__


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"frozen": True},
        {"frozen": True, "kw_only": True},
        {"eq": False},
        {"order": True},
        {"unsafe_hash": True},
        {"repr": False},
    ],
    ids=str,
)
def test_a_built_class_behaves_as_an_eager_one(params: dict[str, Any]) -> None:
    annotations = {"x": "int", "y": "str", "tags": "list[str]"}
    body = {"y": "b", "tags": field(default_factory=list)}
    eager, lazy = _pair(body, annotations, **params)
    kw = {"x": 1, "y": "a"}
    e, z = eager(**kw), lazy(**kw)
    if params.get("repr", True):
        assert repr(z) == repr(e)
    else:
        assert repr(z).startswith("<tests.test_records.Point object at ")
    assert (z == lazy(**kw)) == (e == eager(**kw))
    assert [f.name for f in dataclasses.fields(z)] == [f.name for f in dataclasses.fields(e)]
    assert dataclasses.asdict(z) == dataclasses.asdict(e)
    assert dataclasses.replace(z, x=2).x == 2
    assert lazy(x=1).tags is not lazy(x=1).tags  # a new list each time, as the factory says
    assert getattr(lazy, "__match_args__", None) == getattr(eager, "__match_args__", None)
    if params.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            z.x = 3  # type: ignore[misc]
        with pytest.raises(TypeError, match="unhashable type: 'list'"):
            hash(z)  # the list field, as for the eager class:
        with pytest.raises(TypeError, match="unhashable type: 'list'"):
            hash(e)
        assert hash(lazy(x=1, tags=())) == hash(lazy(x=1, tags=()))
    else:
        z.x = 3
        assert z.x == 3
    if params.get("order"):
        assert lazy(x=1) < lazy(x=2)
    if not params.get("kw_only") and params.get("eq", True):
        assert lazy(1, "a") == lazy(**kw)
        with pytest.raises(TypeError):
            lazy()  # x has no default: the real __init__'s error
    assert type(z).__init__.__qualname__ == "Point.__init__"


def test_introspection_builds_the_class_first() -> None:
    @dataclass(frozen=True)
    class Seen:
        a: int = 1

    assert dataclasses.is_dataclass(Seen)
    assert [f.name for f in dataclasses.fields(Seen)] == ["a"]
    assert not _pending(Seen)


def test_bases_subclasses_and_post_init() -> None:
    calls = []

    @dataclass(frozen=True)
    class Base:
        a: int
        b: int = 2

        def __post_init__(self) -> None:
            calls.append(self.a)

    @dataclass(frozen=True, kw_only=True)
    class Child(Base):
        c: int = 3

    @dataclasses.dataclass(frozen=True)  # an eager subclass of a pending base
    class Eager(Base):
        d: int = 4

    assert Child(1, c=5) == Child(a=1, b=2, c=5)
    assert repr(Child(1)) == "test_bases_subclasses_and_post_init.<locals>.Child(a=1, b=2, c=3)"
    assert Eager(7).d == 4
    assert Base(9) != Child(9)  # eq compares the class as dataclasses does
    assert calls == [1, 1, 1, 7, 9, 9]


def test_init_var_reaches_post_init() -> None:
    @dataclass
    class WithInit:
        a: int
        scale: InitVar[int] = 1

        def __post_init__(self, scale: int) -> None:
            self.a *= scale

    assert WithInit(2, 5).a == 10
    assert WithInit(2).a == 2


def test_a_class_without_a_docstring_gets_the_signature_as_dataclasses_gives_it() -> None:
    eager, lazy = _pair({}, {"x": "int"})
    lazy(1)
    assert lazy.__doc__ == eager.__doc__ == "Point(x: 'int')"


def _race(cls: type, threads: int = 8) -> tuple[list[Any], list[BaseException]]:
    """Every thread instantiates ``cls`` at the same moment, 50 times."""
    start = threading.Barrier(threads)
    made: list[Any] = []
    errors: list[BaseException] = []

    def go() -> None:
        start.wait()
        try:
            made.extend(cls(i) for i in range(50))
        except BaseException as exc:
            errors.append(exc)

    running = [threading.Thread(target=go) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return made, errors


def test_threads_instantiating_a_new_class_all_get_instances() -> None:
    """The stand-in ``__init__`` is replaced in one assignment: no thread ever meets a
    class without one (it would fail with "takes no arguments")."""
    for _ in range(20):

        @dataclass(frozen=True)
        class Raced:
            a: int
            b: str = "x"

        made, errors = _race(Raced)
        assert errors == []
        assert len(made) == 400 and all(m.b == "x" for m in made)


def test_what_cannot_wait_is_built_at_once() -> None:
    @dataclass(slots=True)
    class Slotted:
        a: int

    @dataclass
    class OwnInit:
        a: int = 0

        def __init__(self) -> None:
            self.a = 5

    assert not _pending(Slotted) and Slotted(1).a == 1
    assert not _pending(OwnInit) and OwnInit().a == 5


@dataclass(frozen=True)
class Pickled:
    """A module-level class: pickle finds it by name."""

    a: int
    tags: tuple[str, ...] = ()


class _Base:
    def describe(self) -> str:
        return "base"


def test_the_class_made_again_keeps_its_name_methods_and_super() -> None:
    import functools
    import pickle

    @dataclass
    class Shape:
        sides: int = 3

        def describe(self) -> str:
            return f"{self.sides} sides"

        @classmethod
        def names(cls) -> list[str]:
            return [f.name for f in dataclasses.fields(cls)]

        @property
        def double(self) -> int:
            return self.sides * 2

        @functools.cached_property
        def cached(self) -> int:
            return self.sides + 1

    @dataclass
    class Square(Shape):
        sides: int = 4

        def describe(self) -> str:
            return "square: " + super().describe()  # the __class__ cell: the class made here

    assert Shape.names() == ["sides"]
    s = Square()
    assert (s.describe(), s.double, s.cached) == ("square: 4 sides", 8, 5)
    assert isinstance(s, Shape) and type(s) is Square
    assert Square.__qualname__.endswith("<locals>.Square")
    assert pickle.loads(pickle.dumps(Pickled(1, ("x",)))) == Pickled(1, ("x",))


def test_a_class_with_another_base_is_built_at_once() -> None:
    @dataclass
    class Mixed(_Base):
        a: int = 0

    assert not _pending(Mixed)
    assert Mixed().describe() == "base"
