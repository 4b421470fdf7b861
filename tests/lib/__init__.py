"""walship test helpers; see walship_testlib.py (importable as ``tests.lib.walship_testlib``
or, with tests/lib on sys.path, as ``walship_testlib``)."""
