"""Name registries and the `Registered` base that makes classes frozen dataclasses.

Every configurable gradchain class (modules, regularizers, constraints,
schedulers) derives from :class:`Registered`. Subclassing it does two things:

1. the subclass becomes a *frozen dataclass*: annotated class attributes are
   its hyper-parameters, instances are immutable, hashable and equal by value
   (so a rebuilt, equal optimizer never triggers a recompilation when it is a
   static argument of a jitted function);
2. the subclass is registered under its ``name`` class attribute in the
   registry of its family, unless ``register=False`` is passed in the class
   statement. A missing ``name`` or a name already used by another class of the
   same family raises at class creation;
3. construction converts the fields declared with :func:`field(convert=...)
   <field>` and then runs the ``__check_init__`` of every class in the MRO,
   base classes first (equinox's idea): each class checks its own fields and
   never calls ``super()``. Defining ``__post_init__`` in a subclass is an
   error: it would silently skip the checks of the classes above it.

Example:
    >>> import gradchain as gc
    >>> class Halve(gc.modules.Module, register=False):
    ...     factor: float = 0.5
    ...     def update(self, updates, state, params=None, **extra):
    ...         return gc.tree.scale(updates, self.factor), state
    >>> Halve() == Halve(0.5), hash(Halve()) == hash(Halve(0.5))
    (True, True)
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import jax
import numpy as np

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10
    from typing_extensions import dataclass_transform

__all__ = ["Registered", "Registry", "field", "to_json_value"]

Converter = Callable[[Any, str], Any]


def field(
    default: Any = dataclasses.MISSING,
    *,
    convert: Converter | None = None,
    kw_only: bool = False,
) -> Any:
    """Declare a hyper-parameter with a default and/or a conversion applied at construction.

    Args:
        default: the default value (none: the argument is required).
        convert: ``convert(value, field_name) -> value``, run before any
            ``__check_init__`` (e.g. turn a list into a tuple, parse a spec);
            it raises TypeError / ValueError naming the field for bad input.
        kw_only: make the argument keyword-only.

    Example:
        >>> import gradchain as gc
        >>> from gradchain.core import field
        >>> class Scale(gc.modules.Module, register=False):
        ...     factors: tuple = field(default=(), convert=lambda v, name: tuple(v))
        >>> Scale([1.0, 2.0]).factors
        (1.0, 2.0)
    """
    metadata = {"convert": convert} if convert is not None else {}
    return dataclasses.field(default=default, kw_only=kw_only, metadata=metadata)


class Registry(Mapping[str, "type[Registered]"]):
    """A mapping ``{name: class}`` for one family of registered classes.

    Safe under concurrent registration: writers (``add``, ``unregister``,
    ``restore``) hold a lock and swap in a new dict instead of changing the
    current one, so a reader (iteration, ``snapshot``, lookups) always sees
    one complete version and never "dictionary changed size during
    iteration".

    Args:
        family: what the registry holds, used in error messages ("module").
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._classes: dict[str, type[Registered]] = {}  # never mutated: replaced whole
        self._lock = threading.Lock()

    def add(self, cls: type[Registered]) -> None:
        """Register ``cls`` under ``cls.name``; raise on a missing or taken name."""
        name = cls.__dict__.get("name")
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{cls.__qualname__} is a registered {self.family} class and must "
                "define a non-empty string class attribute `name` (or be declared "
                f"with `class {cls.__name__}(..., register=False)`)."
            )
        with self._lock:
            previous = self._classes.get(name)
            if previous is not None and not _same_definition(previous, cls):
                raise ValueError(
                    f"Cannot register {cls.__module__}.{cls.__qualname__} as {self.family} "
                    f"'{name}': that name is already taken by "
                    f"{previous.__module__}.{previous.__qualname__}."
                )
            self._classes = {**self._classes, name: cls}

    def get_class(self, name: str) -> type[Registered]:
        """Return the class registered under ``name``; KeyError listing known names."""
        if not isinstance(name, str):
            raise TypeError(f"A {self.family} name must be a string, got {name!r}.")
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "(none)"
            raise KeyError(
                f"Unknown {self.family} name {name!r}; registered {self.family} "
                f"names are: {known}."
            ) from None

    def __getitem__(self, name: str) -> type[Registered]:
        return self.get_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def unregister(self, name: str) -> type[Registered]:
        """Remove and return the class registered as ``name`` (KeyError if unknown)."""
        with self._lock:
            cls = self.get_class(name)
            self._classes = {k: v for k, v in self._classes.items() if k != name}
        return cls

    def snapshot(self) -> dict[str, type[Registered]]:
        """A copy of the registry as a plain dict."""
        return dict(self._classes)

    def restore(self, snapshot: dict[str, type[Registered]]) -> None:
        """Put back the registrations of a :meth:`snapshot` (forgetting later ones)."""
        with self._lock:
            self._classes = dict(snapshot)


def _same_definition(old: type, new: type) -> bool:
    # Re-running a cell in a notebook (or reloading a module) defines the same
    # class a second time: let the newer definition replace the older one.
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)


@dataclass_transform(frozen_default=True, field_specifiers=(field, dataclasses.field))
class Registered:
    """Base of every named, configurable, immutable gradchain class.

    Subclasses declare hyper-parameters as annotated class attributes; they
    become the fields of a frozen dataclass. A family base class (such as
    :class:`gradchain.Module`) sets ``registry``; concrete subclasses then set
    ``name``.
    """

    name: ClassVar[str]
    registry: ClassVar[Registry | None] = None
    #: The config the registry-driven contract suite builds this class from
    #: (required when the class has arguments without defaults).
    example_config: ClassVar[Mapping[str, Any] | None] = None
    #: Set on every subclass by ``dataclasses.dataclass`` in ``__init_subclass__``.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__} defines __post_init__: define __check_init__(self) "
                "instead (every class's check runs, base classes first, without super() "
                "calls), and declare conversions with gradchain.core.field(convert=...)."
            )
        # Turning the class into a frozen dataclass in place: `dataclass`
        # returns the very class it is given when `slots` is off.
        dataclasses.dataclass(frozen=True, eq=True, repr=True)(cls)
        if register:
            registry = cls.registry
            if registry is None:
                raise TypeError(
                    f"{cls.__qualname__} cannot be registered: derive it from a "
                    "family base class (Module, Regularizer, Constraint or "
                    "Scheduler) or declare it with register=False."
                )
            registry.add(cls)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _scalar_item(getattr(self, f.name))
            convert = f.metadata.get("convert")
            if convert is not None:
                value = convert(value, f.name)
            object.__setattr__(self, f.name, value)
        for klass in reversed(type(self).__mro__):
            check = klass.__dict__.get("__check_init__")
            if check is not None:
                check(self)

    @classmethod
    def contract_example(cls) -> dict[str, Any]:
        """The config the contract suite builds this class from."""
        return dict(cls.example_config or {})

    # -- configuration -------------------------------------------------------
    @classmethod
    def config_fields(cls) -> tuple[dataclasses.Field, ...]:
        """The constructor arguments: positional ones in order, then keyword-only ones."""
        fields = [f for f in dataclasses.fields(cls) if f.init]
        return tuple(sorted(fields, key=lambda f: f.kw_only is True))

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument, as JSON-compatible values."""
        return {f.name: to_json_value(getattr(self, f.name)) for f in self.config_fields()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Rebuild an instance from :meth:`get_config` output.

        Raises:
            TypeError: ``config`` is not a mapping, has unknown keys or lacks a
                required argument (the message names them and lists the allowed).
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"The config of {cls._describe()} must be a dict, got "
                f"{type(config).__name__}: {config!r}."
            )
        fields = cls.config_fields()
        allowed = [f.name for f in fields]
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise TypeError(
                f"Unknown argument(s) {unknown} in the config of {cls._describe()}; "
                f"allowed arguments are: {allowed}."
            )
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in config]
        if missing:
            raise TypeError(
                f"Missing required argument(s) {missing} in the config of "
                f"{cls._describe()}; its arguments are: {allowed}."
            )
        return cls(**dict(config))

    @classmethod
    def _describe(cls) -> str:
        name = cls.__dict__.get("name")
        family = cls.registry.family if cls.registry is not None else "class"
        return f"{family} {name!r}" if isinstance(name, str) else cls.__qualname__

    @classmethod
    def from_specs(cls, name: str, config: Mapping[str, Any] | None = None) -> Any:
        """Build the class registered as ``name`` in this family from ``config``."""
        if cls.registry is None:
            raise TypeError(f"{cls.__qualname__} has no registry to look {name!r} up in.")
        target = cls.registry.get_class(name)
        return target.from_config({} if config is None else config)


def _scalar_item(value: Any) -> Any:
    """A concrete 0-d array (numpy or JAX) as its Python number; anything else unchanged.

    A hyper-parameter given as ``jnp.array(0.9)`` would make the instance
    unhashable (a jitted step keyed on it fails with "Non-hashable static
    arguments"); its number is what was meant. Tracers (live values inside
    ``jit``) have no number yet and are kept.
    """
    concrete = isinstance(value, (np.ndarray, np.generic, jax.Array)) and not isinstance(value, jax.core.Tracer)
    return value.item() if concrete and value.shape == () else value


def to_json_value(value: Any) -> Any:
    """Convert a hyper-parameter to plain JSON types (tuples become lists)."""
    if isinstance(value, Registered):
        return [value.name, value.get_config()]
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()  # numpy / jax scalar
    return value
