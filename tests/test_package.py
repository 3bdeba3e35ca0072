"""The package's public surface. (What the built wheel carries and does after `pip install` is tests/test_wheel.py.)"""

def test_top_level_exports_resolve():
    "Every name `medlord_nb` re-exports lazily exists in the module it points to."
    import importlib, medlord_nb
    for name, mod in medlord_nb._EXPORTS.items():
        assert hasattr(importlib.import_module(f"medlord_nb.{mod}"), name), (name, mod)
    assert "load_sample" in dir(medlord_nb)
