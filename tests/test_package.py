import nano


def test_native_extension_loads_and_reports_version():
    assert nano.__version__ == nano._native.__version__
    assert nano.__version__.count(".") == 2
