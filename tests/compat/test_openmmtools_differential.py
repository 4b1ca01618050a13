"""Differential test: the same storage operations on openmmtools.storage and on writebehind.

Hypothesis generates a few variables (some in groups), each holding one kind of value that
openmmtools stores (int, float, str, numpy arrays of its dtypes and shapes, lists and tuples,
dicts, openmm/pint quantities), and a sequence of operations on them: ``write``, ``append``,
``write(at_index=i)``, ``add_metadata`` on the root, groups and variables, reads, and a few
*mismatched* values (another variable's kind) that the first value fixed out. The sequence
runs on openmmtools with ``openmm.unit`` quantities, then on writebehind with pint quantities
of the same magnitudes and unit names, each against its own file. Then:

* every read made during the sequence, every variable at the end (also entry by entry,
  writebehind's ``read(at_index=i)`` against openmmtools' ``read()[i]``) and after the file is
  reopened read-only, and every node's metadata, must hold the same values, numpy dtypes,
  shapes, Python types and units (openmm unit ``get_name()`` read by pint);
* a value openmmtools refuses, writebehind refuses too, except where docs/guide.md or
  docs/migrating.md say writebehind accepts it (named below);
* a value openmmtools accepts, writebehind accepts too, except where the docs say writebehind
  refuses what openmmtools would store changed.

The two libraries run one after the other, never at once: netCDF-C is not thread-safe, and
writebehind's writer thread calls it.

tests/compat/test_openmmtools_compat.py ports openmmtools' own storage tests; this file
does not repeat them. Settings: tests/fuzz_settings.py.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pint
import pytest
from fuzz_settings import FUZZ, TIMEOUT_SECONDS
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import writebehind

omm_storage = pytest.importorskip(
    "openmmtools.storage", reason="openmmtools is not installed (pip install -e '.[compat]')"
)
omm_unit = pytest.importorskip(
    "openmm.unit", reason="OpenMM is not installed (pip install -e '.[compat]')"
)

pytestmark = pytest.mark.timeout(TIMEOUT_SECONDS)

UREG = pint.get_application_registry()

#: Unit names both openmm.unit and pint read the same way.
UNITS = {
    "kelvin": omm_unit.kelvin,
    "nanometer": omm_unit.nanometer,
    "angstrom": omm_unit.angstrom,
    "kilojoule/mole": omm_unit.kilojoule / omm_unit.mole,
    "nanometer/picosecond": omm_unit.nanometer / omm_unit.picosecond,
    "nanometer**2": omm_unit.nanometer**2,
}

#: Array dtypes netCDF (and so openmmtools) stores. No bool: netCDF has no bool type, and
#: openmmtools' NCArray fails to create the variable.
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
DTYPES += ["float32", "float64"]


@dataclass(frozen=True)
class Q:
    """A quantity, before it is made in openmm.unit or in pint."""

    magnitude: Any
    unit: str


# -- values -------------------------------------------------------------------------------
def not_a_fill_value(dtype: np.dtype):
    """openmmtools reads a value equal to netCDF's default fill value back masked.

    ``float(masked)`` is 0.0, so openmmtools itself changes such a value (writebehind never
    returns masked arrays: the types table in docs/guide.md). test_fuzz.py checks that
    writebehind keeps these values; here they are left out so that the comparison is about
    what openmmtools stores faithfully.
    """
    fill = netCDF4.default_fillvals[np.dtype(dtype).str[1:]]

    def ok(x: Any) -> bool:
        return bool(np.asarray(x, dtype=dtype) != np.asarray(fill).astype(dtype))

    return ok


INTS = st.integers(-(2**63), 2**63 - 1).filter(not_a_fill_value(np.dtype("int64")))
FLOATS = st.floats().filter(not_a_fill_value(np.dtype("float64")))
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8)
KEYS = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=5)
UNIT_NAMES = st.sampled_from(sorted(UNITS))


def array_values(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy:
    dt = np.dtype(dtype)
    return hnp.arrays(dt, shape, elements=hnp.from_dtype(dt).filter(not_a_fill_value(dt)))


@st.composite
def templates(draw: Any) -> tuple:
    """A variable's kind: what its first value fixes (kind, dtype, shape, units)."""
    kind = draw(
        st.sampled_from(["int", "float", "str", "array", "list", "tuple", "dict", "quantity"])
    )
    if kind == "array":
        # Shapes of at least one axis of at least one element: openmmtools cannot store a
        # 0-d array (len() of an unsized object) nor a zero-length axis (netCDF makes a
        # dimension of length 0 unlimited). writebehind stores both (types table).
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
        return ("array", draw(st.sampled_from(DTYPES)), shape)
    if kind in ("list", "tuple"):
        # One element type per list: openmmtools stores a list in the dtype of its first
        # element (``[1, 2.5]`` reads back ``[1, 2]``); writebehind stores ints among floats
        # as floats and refuses bools among numbers (docs/guide.md, "What you get back").
        return (kind, draw(st.sampled_from(["int", "float"])), draw(st.integers(1, 4)))
    if kind == "quantity":
        magnitude = draw(st.sampled_from(["int", "float", "list", "array"]))
        unit = draw(UNIT_NAMES)
        if magnitude == "list":
            return ("quantity", ("list", draw(st.integers(1, 4))), unit)
        if magnitude == "array":
            shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3))
            dtype = draw(st.sampled_from(["int32", "int64", "float32", "float64"]))
            return ("quantity", ("array", dtype, shape), unit)
        return ("quantity", (magnitude,), unit)
    return (kind,)


def dict_values() -> st.SearchStrategy:
    """What openmmtools' YAML dicts hold: scalars, str, None, lists, tuples, quantities, arrays.

    Not ints beyond 64 bits, sets or non-str keys: openmmtools' YAML stores them, writebehind
    refuses them at the call (docs/guide.md, "What you get back": dicts with str keys of the
    types in the table; docs/migrating.md: msgpack records never construct arbitrary objects).
    """
    leaves = st.one_of(
        INTS,
        FLOATS,
        TEXT,
        st.booleans(),
        st.none(),
        st.lists(st.one_of(INTS, FLOATS), max_size=3),
        st.tuples(INTS, FLOATS),
        st.builds(Q, st.one_of(INTS, FLOATS), UNIT_NAMES),
        hnp.arrays(st.sampled_from(["int32", "float64"]), st.integers(1, 3)),
    )
    return st.recursive(
        st.dictionaries(KEYS, leaves, max_size=3),
        lambda inner: st.dictionaries(KEYS, st.one_of(leaves, inner), max_size=3),
        max_leaves=6,
    )


def values_of(template: tuple) -> st.SearchStrategy:
    kind = template[0]
    if kind == "int":
        return INTS
    if kind == "float":
        return FLOATS
    if kind == "str":
        return TEXT
    if kind == "array":
        return array_values(template[1], template[2])
    if kind in ("list", "tuple"):
        element = INTS if template[1] == "int" else FLOATS
        items = st.lists(element, min_size=template[2], max_size=template[2])
        return items if kind == "list" else items.map(tuple)
    if kind == "dict":
        return dict_values()
    magnitude, unit = template[1], template[2]
    if magnitude[0] == "int":
        # An int magnitude that a float64 cannot hold is refused by writebehind wherever a
        # float may meet it; pint keeps ints, so within 2**53 both store it as given.
        mags: st.SearchStrategy = st.integers(-(2**53), 2**53)
    elif magnitude[0] == "float":
        mags = FLOATS
    elif magnitude[0] == "list":
        mags = st.lists(FLOATS, min_size=magnitude[1], max_size=magnitude[1])
    else:
        mags = array_values(magnitude[1], magnitude[2])
    return st.builds(Q, mags, st.just(unit))


METADATA_VALUES = st.one_of(
    TEXT,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=3),
    st.lists(st.floats(), min_size=1, max_size=3),
    hnp.arrays(st.sampled_from(["int32", "int64", "float64"]), st.integers(1, 3)),
)
#: openmmtools writes its own bookkeeping attributes ("type", "IODriver_*") on variables.
METADATA_NAMES = st.sampled_from(["title", "step", "note", "origin"])


# -- the two sides --------------------------------------------------------------------------
def to_openmm(value: Any) -> Any:
    if isinstance(value, Q):
        return omm_unit.Quantity(value.magnitude, UNITS[value.unit])
    if isinstance(value, dict):
        return {k: to_openmm(v) for k, v in value.items()}
    return value


def to_pint(value: Any) -> Any:
    if isinstance(value, Q):
        return UREG.Quantity(value.magnitude, value.unit)
    if isinstance(value, dict):
        return {k: to_pint(v) for k, v in value.items()}
    return value


def copy_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Q):
        return Q(copy_value(value.magnitude), value.unit)
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


@dataclass
class Scenario:
    """Variables (path -> template, write or append) and the operations on them."""

    variables: dict[str, tuple[tuple, bool]]
    ops: list[tuple] = field(default_factory=list)


GROUP_PATHS = ["", "g", "g/h"]
#: The first op stores a value (so that both libraries create their file), then any.
OPS = ["value", "value", "value", "at_index", "meta", "read", "odd"]


@st.composite
def scenarios(draw: Any) -> Scenario:
    n_vars = draw(st.integers(1, 4))
    variables: dict[str, tuple[tuple, bool]] = {}
    for i in range(n_vars):
        group = draw(st.sampled_from(GROUP_PATHS))
        path = f"{group}/v{i}" if group else f"v{i}"
        variables[path] = (draw(templates()), draw(st.booleans()))
    scenario = Scenario(variables)
    lengths = dict.fromkeys(variables, 0)
    paths = sorted(variables)
    for number in range(draw(st.integers(1, 12))):
        op = "value" if number == 0 else draw(st.sampled_from(OPS))
        path = draw(st.sampled_from(paths))
        template, appendable = variables[path]
        if op == "value":
            value = draw(values_of(template))
            scenario.ops.append(("append" if appendable else "write", path, value))
            lengths[path] += 1
        elif op == "at_index" and appendable and lengths[path]:
            n = lengths[path]
            index = draw(st.integers(-n, n - 1))
            scenario.ops.append(("write_at", path, index, draw(values_of(template))))
        elif op == "meta":
            node = draw(st.sampled_from(["", *GROUP_PATHS[1:], path]))
            name, value = draw(METADATA_NAMES), draw(METADATA_VALUES)
            scenario.ops.append(("meta", node, name, value))
        elif op == "read" and lengths[path]:
            scenario.ops.append(("read", path))
        elif op == "odd" and lengths[path]:
            # A value of another kind, or of the same kind in another shape/dtype/unit.
            other = draw(templates())
            value = draw(values_of(other))
            scenario.ops.append(("odd", path, appendable, value))
    return scenario


def node(store: Any, path: str) -> Any:
    target = store
    for name in path.split("/") if path else []:
        target = getattr(target, name)
    return target


@dataclass
class Run:
    """What one library did: each op's outcome (None, or the exception) and each read."""

    outcomes: list[Exception | None] = field(default_factory=list)
    reads: dict[int, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    reopened: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_ops(store: Any, scenario: Scenario, convert: Any, run: Run) -> None:
    for number, op in enumerate(scenario.ops):
        outcome: Exception | None = None
        try:
            if op[0] in ("write", "append"):
                getattr(node(store, op[1]), op[0])(convert(copy_value(op[2])))
            elif op[0] == "write_at":
                node(store, op[1]).write(convert(copy_value(op[3])), at_index=op[2])
            elif op[0] == "odd":
                method = "append" if op[2] else "write"
                getattr(node(store, op[1]), method)(convert(copy_value(op[3])))
            elif op[0] == "meta":
                node(store, op[1]).add_metadata(op[2], copy_value(op[3]))
            else:
                run.reads[number] = node(store, op[1]).read()
        except Exception as exc:
            outcome = exc
        run.outcomes.append(outcome)


def read_all(store: Any, scenario: Scenario, by_index: bool = False) -> dict[str, Any]:
    """Each variable's ``read()`` (or the exception); with ``by_index``, also each entry."""
    values: dict[str, Any] = {}
    for path, (_, appendable) in scenario.variables.items():
        try:
            values[path] = node(store, path).read()
        except Exception as exc:
            values[path] = exc
            continue
        if by_index and appendable:
            n = len(node(store, path))
            values[path + "[]"] = [node(store, path).read(at_index=i) for i in range(n)]
    return values


def metadata_nodes(scenario: Scenario) -> list[str]:
    return ["", *GROUP_PATHS[1:], *scenario.variables]


def openmmtools_file_metadata(path: Path, scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The user's attributes of each node in openmmtools' file ("type", "IODriver_*" left out)."""
    found: dict[str, dict[str, Any]] = {}
    with netCDF4.Dataset(str(path), "r") as ncfile:
        for name in metadata_nodes(scenario):
            target: Any = ncfile
            try:
                for part in name.split("/") if name else []:
                    if part in target.groups:
                        target = target.groups[part]
                    else:
                        target = target.variables[part]
            except KeyError:
                continue
            found[name] = {
                attr: target.getncattr(attr)
                for attr in target.ncattrs()
                if not attr.startswith("IODriver_") and attr != "type"
            }
    return found


def writebehind_metadata(store: Any, scenario: Scenario) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in metadata_nodes(scenario):
        if name and name not in store:
            continue
        found[name] = node(store, name).read_metadata()
    return found


def run_openmmtools(path: Path, scenario: Scenario) -> Run:
    run = Run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        driver = omm_storage.NetCDFIODriver(str(path), "w")
        run_ops(omm_storage.StorageInterface(driver), scenario, to_openmm, run)
        run.final = read_all(omm_storage.StorageInterface(driver), scenario)
        driver.close()
        driver = omm_storage.NetCDFIODriver(str(path), "r")
        run.reopened = read_all(omm_storage.StorageInterface(driver), scenario)
        driver.close()
    run.metadata = openmmtools_file_metadata(path, scenario)
    return run


def run_writebehind(path: Path, scenario: Scenario) -> Run:
    run = Run()
    with writebehind.StorageInterface(writebehind.NetCDFIODriver(str(path), "w")) as store:
        run_ops(store, scenario, to_pint, run)
        run.final = read_all(store, scenario, by_index=True)
    with writebehind.StorageInterface(writebehind.NetCDFIODriver(str(path), "r")) as store:
        run.reopened = read_all(store, scenario, by_index=True)
        run.metadata = writebehind_metadata(store, scenario)
    return run


# -- comparing what each read back ----------------------------------------------------------
def plain(value: Any) -> Any:
    """openmmtools' netCDF reads are masked arrays; nothing generated here is masked."""
    if isinstance(value, np.ma.MaskedArray):
        assert not np.ma.is_masked(value), "openmmtools masked a generated value"
        return np.ma.getdata(value)
    return value


def same_number(got: Any, expected: Any) -> None:
    """Same numpy dtype (a Python int as int64, float as float64) and the same bits."""
    assert np.asarray(got).dtype == np.asarray(expected).dtype, (got, expected)
    if isinstance(expected, float | np.floating) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
        if isinstance(expected, float | np.floating):
            assert math.copysign(1, got) == math.copysign(1, expected)


def same_array(got: Any, expected: Any) -> None:
    got, expected = plain(got), plain(expected)
    assert isinstance(got, np.ndarray) and not isinstance(got, np.ma.MaskedArray), type(got)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got, expected)
    np.testing.assert_array_equal(got, expected)
    if got.dtype.kind == "f":
        assert (np.signbit(got) == np.signbit(expected)).all()


def same_units(got: pint.Quantity, expected: Any) -> None:
    """pint units against openmm units, read by pint from the openmm unit's name."""
    assert got.units == UREG.Unit(expected.unit.get_name()), (got.units, expected.unit)


def same_value(got: Any, expected: Any) -> None:
    """What writebehind read (``got``) against what openmmtools read (``expected``)."""
    expected = plain(expected)
    if isinstance(expected, omm_unit.Quantity):
        assert isinstance(got, pint.Quantity), type(got)
        same_units(got, expected)
        magnitude = plain(expected._value)
        if isinstance(magnitude, list | tuple):
            # pint holds a list magnitude as an array (pint's doing, not writebehind's).
            magnitude = np.asarray(magnitude)
        same_value(got.magnitude, magnitude)
    elif isinstance(expected, np.ndarray):
        same_array(got, expected)
    elif isinstance(expected, dict):
        # openmmtools' YAML sorts the keys; writebehind keeps the order they were given in.
        assert type(got) is dict and sorted(got) == sorted(expected), (got, expected)
        for key in expected:
            same_value(got[key], expected[key])
    elif isinstance(expected, list | tuple):
        # openmmtools' lists hold numpy scalars (np.int64), writebehind's Python scalars
        # (docs/guide.md types table); the dtype and the value must agree.
        assert type(got) is type(expected) and len(got) == len(expected), (got, expected)
        for g, e in zip(got, expected, strict=True):
            if isinstance(e, np.generic):
                assert type(g) is type(e.item()), (g, e)
                same_number(g, e)
            else:
                same_value(g, e)
    elif isinstance(expected, bool | str | None):
        assert type(got) is type(expected) and got == expected, (got, expected)
    else:
        assert type(got) is type(expected), (got, expected)
        same_number(got, expected)


def entries_of_openmmtools(value: Any, template: tuple) -> tuple[Any, list[Any]]:
    """openmmtools' read of an appended variable: its units (or None) and its entries.

    openmmtools reads appended ints, floats, strs and scalar quantities as ``(n, 1)`` arrays,
    lists, tuples and dicts as object arrays; writebehind as 1-D arrays and lists (the types
    table in docs/guide.md; docs/migrating.md, "Types, shapes and errors").
    """
    units = None
    if isinstance(value, omm_unit.Quantity):
        units, value = value.unit, value._value
        template = template[1]
    value = plain(value)
    if template[0] in ("int", "float"):
        return units, list(value[:, 0])
    if template[0] == "str":
        return units, [str(entry) for entry in value[:, 0]]
    if units is not None and template[0] == "list":
        return units, [np.asarray(entry) for entry in value]
    return units, list(value)


def entries_of_writebehind(value: Any) -> tuple[Any, list[Any]]:
    """writebehind's read of an appended variable, or its entries read by ``at_index``."""
    if isinstance(value, pint.Quantity):
        return value.units, list(value.magnitude)
    if len(value) and all(isinstance(entry, pint.Quantity) for entry in value):
        units = {entry.units for entry in value}
        assert len(units) == 1, units
        return units.pop(), [entry.magnitude for entry in value]
    return None, list(value)


def compare_variable(got: Any, expected: Any, template: tuple, appendable: bool) -> None:
    if not appendable:
        same_value(got, expected)
        return
    kind = template[0]
    if kind in ("int", "float", "array", "quantity"):
        # Appended numbers are stacked into one array (a quantity of one), as in openmmtools.
        magnitude = got.magnitude if kind == "quantity" else got
        assert isinstance(magnitude, np.ndarray), type(got)
    else:
        assert isinstance(got, list), type(got)
    compare_entries(got, expected, template)


def compare_entries(got: Any, expected: Any, template: tuple) -> None:
    """Entry by entry: the same numbers in the same dtype, the same units."""
    got_units, got_entries = entries_of_writebehind(got)
    expected_units, expected_entries = entries_of_openmmtools(expected, template)
    if expected_units is not None:
        assert got_units == UREG.Unit(expected_units.get_name()), (got_units, expected_units)
    else:
        assert got_units is None
    assert len(got_entries) == len(expected_entries)
    for g, e in zip(got_entries, expected_entries, strict=True):
        if isinstance(e, np.ndarray):
            same_array(np.asarray(g), e)
        elif isinstance(e, np.generic):
            same_number(g, e)
        else:
            same_value(g, e)


def same_metadata(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """writebehind's ``read_metadata()`` against the attributes openmmtools left in its file."""
    assert sorted(got) == sorted(expected), (got, expected)
    for name, e in expected.items():
        g = got[name]
        if isinstance(e, str):
            assert type(g) is str and g == e, (g, e)
        elif isinstance(g, list | tuple | np.ndarray):
            # netCDF gives a one-element list or array back as a scalar; writebehind gives
            # back the list or array it was given (codecs/metadata.py).
            assert np.asarray(g).dtype == np.asarray(e).dtype, (g, e)
            np.testing.assert_array_equal(np.asarray(g), np.asarray(e).reshape(-1))
        else:
            assert np.asarray(e).shape == (), (g, e)
            same_number(g, e.item() if isinstance(g, int | float) else e)


# -- the property ---------------------------------------------------------------------------
#: openmmtools refuses these, writebehind accepts them:
#:  * an int written or appended to a float variable (docs/guide.md, "What you get back":
#:    ints a float holds exactly are stored as floats);
#:  * a quantity in compatible units (docs/migrating.md, "Units are pint's": converted to
#:    the stored units).
#: openmmtools accepts these, writebehind refuses them:
#:  * an array of a dtype the variable's cannot hold exactly (docs/guide.md: TypeError for a
#:    dtype that would lose information; openmmtools casts it silently);
#:  * a value of another kind than the first (docs/migrating.md: ``write`` on an appended
#:    variable or ``append`` to a written one raise; openmmtools' isinstance check lets a
#:    tuple into a list variable and silently reads it back as a list).
def documented_difference(scenario: Scenario, op: tuple, omm: Any, wb: Any) -> bool:
    if op[0] != "odd":
        return False
    template = scenario.variables[op[1]][0]
    value = op[3]
    if omm is not None and wb is None:  # openmmtools refused, writebehind stored it
        if template[0] == "float" and type(value) is int:
            return True
        if template[0] == "quantity" and isinstance(value, Q):
            dims = UREG.Unit(value.unit).dimensionality
            return dims == UREG.Unit(template[2]).dimensionality
        return False
    if omm is None and wb is not None:  # openmmtools stored it, writebehind refused
        return isinstance(wb, TypeError | ValueError)
    return False


@FUZZ
@given(scenario=scenarios())
def test_openmmtools_and_writebehind_read_back_the_same(tmp_path_factory, scenario):
    directory = tmp_path_factory.mktemp("differential")
    omm_path, wb_path = directory / "openmmtools.nc", directory / "writebehind.nc"
    omm_run = run_openmmtools(omm_path, scenario)
    wb_run = run_writebehind(wb_path, scenario)

    # Outcomes and reads op by op. A variable that took a value in one library and not in
    # the other differs from then on: it is left out of the comparison of contents.
    diverged: set[str] = set()
    for number, (op, omm, wb) in enumerate(
        zip(scenario.ops, omm_run.outcomes, wb_run.outcomes, strict=True)
    ):
        if (omm is None) != (wb is None):
            assert documented_difference(scenario, op, omm, wb), (op, omm, wb)
            diverged.add(op[1])
        elif op[0] == "read" and omm is None and op[1] not in diverged:
            template, appendable = scenario.variables[op[1]]
            compare_variable(wb_run.reads[number], omm_run.reads[number], template, appendable)

    # Every variable at the end, and after reopening the file.
    for path, (template, appendable) in scenario.variables.items():
        if path in diverged:
            continue
        for omm_values, wb_values in (
            (omm_run.final, wb_run.final),
            (omm_run.reopened, wb_run.reopened),
        ):
            expected, got = omm_values[path], wb_values[path]
            if isinstance(expected, Exception):  # never written in openmmtools
                # openmmtools' get_directory(create=False) turns a missing group's KeyError
                # into an UnboundLocalError (docs/migrating.md, "Types, shapes and errors").
                assert isinstance(expected, KeyError | UnboundLocalError), expected
                # A node that only got metadata stays unwritten after close, as in
                # openmmtools (writebehind keeps its metadata on the parent group).
                assert isinstance(got, KeyError), (path, expected, got)
                continue
            compare_variable(got, expected, template, appendable)
            if appendable:
                # read(at_index=i), entry by entry, against openmmtools' read()[i]
                compare_entries(wb_values[path + "[]"], expected, template)

    # Metadata: what openmmtools' file holds, writebehind's holds too.
    for name, omm_attrs in omm_run.metadata.items():
        assert name in wb_run.metadata, name
        wb_attrs = dict(wb_run.metadata[name])
        # openmmtools writes a node's metadata when that node's object binds to the file,
        # which a group's does only when a variable *directly* in it is written: metadata
        # given to "g" before only "g/h/v" is written is lost. writebehind keeps it
        # (docs/guide.md, "Metadata"): such names are only in writebehind's file.
        given = {op[2] for op in scenario.ops if op[0] == "meta" and op[1] == name}
        for extra in set(wb_attrs) - set(omm_attrs):
            assert extra in given and name in GROUP_PATHS, (name, extra)
            del wb_attrs[extra]
        same_metadata(wb_attrs, omm_attrs)
