"""walship test helpers; see walship_testlib/ (importable as ``tests.lib.walship_testlib``
or, with tests/lib on sys.path, as ``walship_testlib``)."""
