"""openmm.unit quantities are values: stored as the pint quantities they equal, exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pint
import pytest

from writebehind import NetCDFIODriver, StorageInterface
from writebehind.codecs.openmm_units import OPENMM_TO_PINT, pint_units_of

unit = pytest.importorskip("openmm.unit", reason="OpenMM is not installed (pip install openmm)")
openmm = pytest.importorskip("openmm", reason="OpenMM is not installed (pip install -e '.[md]')")

UREG = pint.get_application_registry()


def test_importing_writebehind_never_imports_openmm():
    code = "import sys, writebehind, writebehind.codecs; assert 'openmm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(OPENMM_TO_PINT))
def test_every_mapped_unit_is_the_same_size_in_pint_and_openmm(name):
    units = [u for u in vars(unit).values() if isinstance(u, unit.Unit)]
    found = {b.name: b for u in units for b, _ in u.iter_base_or_scaled_units()}
    if name not in found:
        pytest.skip(f"this OpenMM has no unit {name!r}")
    openmm_unit = unit.Unit({found[name]: 1.0})
    si = openmm_unit.in_unit_system(unit.si_unit_system)
    openmm_factor = openmm_unit.conversion_factor_to(si)
    pint_units, _ = pint_units_of(openmm_unit)
    pint_factor = UREG.Quantity(1.0, pint_units).m_as(str(si))
    assert pint_factor == pytest.approx(openmm_factor, rel=1e-12)


VALUES = {
    "scalar": 300.0 * unit.kelvin,
    "int scalar": 5 * unit.kelvin,
    "product": -3.5 * unit.kilojoule_per_mole / unit.nanometer**2,
    "charge": -1.0 * unit.elementary_charge,
    "mass": 12.011 * unit.dalton,
    "pressure": 1.0 * unit.bar,
    "atmosphere": 1.0 * unit.atmosphere,
    "kcal": 2.5 * unit.kilocalorie_per_mole,
    "angstrom": 1.5 * unit.angstrom,
    "time step": 2.0 * unit.femtosecond,
    "vec3 list": [openmm.Vec3(0.1, 0.2, 0.3), openmm.Vec3(1.0, 2.0, 3.0)] * unit.nanometer,
    "numpy": unit.Quantity(np.linspace(0, 1, 12).reshape(4, 3), unit.nanometer / unit.picosecond),
}


def _expected(value):
    magnitude = value._value
    if isinstance(magnitude, list | tuple):
        magnitude = np.asarray(magnitude)
    return magnitude


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_an_openmm_quantity_reads_back_as_the_equal_pint_quantity(tmp_path, value):
    path = tmp_path / "q.nc"
    with StorageInterface(NetCDFIODriver(path, "w")) as store:
        store.value.write(value)
        store.entries.append(value)
        store.entries.append(value)
    with StorageInterface(NetCDFIODriver(path, "r")) as store:
        got = store.value.read()
        entries = store.entries.read()
    assert isinstance(got, pint.Quantity)
    np.testing.assert_array_equal(got.magnitude, _expected(value))  # exact: not rescaled
    assert got.units == pint_units_of(value.unit)[0]
    np.testing.assert_array_equal(entries.magnitude, np.stack([_expected(value)] * 2))


def test_the_stored_units_equal_openmms_in_si(tmp_path):
    value = -3.5 * unit.kilocalorie_per_mole / unit.angstrom**2
    with StorageInterface(NetCDFIODriver(tmp_path / "q.nc", "w")) as store:
        store.k.write(value)
        got = store.k.read()
    si = value.in_unit_system(unit.si_unit_system)
    assert got.to_base_units().magnitude == pytest.approx(si._value, rel=1e-12)


def test_a_dalton_is_a_molar_mass_as_in_openmm():
    units, text = pint_units_of(unit.dalton)
    assert text == "gram/mole"
    assert units == UREG.gram / UREG.mole


def test_an_openmm_quantity_in_other_units_is_converted_to_the_variables(tmp_path):
    with StorageInterface(NetCDFIODriver(tmp_path / "q.nc", "w")) as store:
        store.x.append(1.0 * unit.nanometer)
        store.x.append(5.0 * unit.angstrom)
        store.x.append(UREG.Quantity(2.0, "nanometer"))
        np.testing.assert_allclose(store.x.read().m_as("nanometer"), [1.0, 0.5, 2.0])


def test_a_quantity_of_another_dimension_is_refused(tmp_path):
    with StorageInterface(NetCDFIODriver(tmp_path / "q.nc", "w")) as store:
        store.x.append(1.0 * unit.nanometer)
        with pytest.raises(pint.DimensionalityError):
            store.x.append(1.0 * unit.picosecond)


def test_a_unit_without_an_exact_pint_equivalent_is_refused_with_its_name(tmp_path):
    with StorageInterface(NetCDFIODriver(tmp_path / "q.nc", "w")) as store:
        with pytest.raises(TypeError, match=r"'item'.*value_in_unit"):
            store.x.write(3.0 * unit.gram / unit.item)
        assert "x" not in store


def test_openmm_quantities_inside_dicts_read_back_as_pint_quantities(tmp_path):
    value = {"temperature": 300 * unit.kelvin, "box": [openmm.Vec3(2, 0, 0)] * unit.nanometer}
    with StorageInterface(NetCDFIODriver(tmp_path / "q.nc", "w")) as store:
        store.d.write(value)
        got = store.d.read()
    assert got["temperature"] == UREG.Quantity(300, "kelvin")
    np.testing.assert_array_equal(got["box"].m_as("nanometer"), [[2, 0, 0]])


def test_openmmtools_code_with_an_openmm_quantity_type_key_runs_unchanged(tmp_path):
    driver = NetCDFIODriver(str(tmp_path / "q.nc"))
    variable = driver.create_storage_variable("thermo/temperature", unit.Quantity)
    variable.write(300 * unit.kelvin)
    appended = driver.create_storage_variable("thermo/energies", unit.Quantity)
    for energy in (-1.0, -2.0):
        appended.append(energy * unit.kilojoule_per_mole)
    assert variable.read() == UREG.Quantity(300, "kelvin")
    np.testing.assert_array_equal(appended.read().m_as("kilojoule/mole"), [-1.0, -2.0])
    with pytest.raises(TypeError, match="Quantity"):
        variable.write(300.0)
    driver.close()
