r"""The layout of the test suite: what tests share lives in support modules
(tests/helpers.py, tests/fake_datasets.py, ...); no module imports a test
module (``test_*.py`` or ``conftest.py``), so that each test file can be run,
moved or deleted alone."""
import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(source: str, package: str):
    r"""The dotted names of the modules (and of the names under them) that
    :obj:`source`, a module of :obj:`package`, imports anywhere in its body,
    relative imports resolved."""
    parts = package.split('.')
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            yield module
            # `from tests import test_x` imports a module by its name.
            yield from (f'{module}.{alias.name}' for alias in node.names)


def named_test_modules(name: str) -> list:
    r"""The test modules (``test_*`` or ``conftest``) that :obj:`name`
    names inside the ``tests`` package."""
    parts = name.split('.')
    if parts[0] != 'tests':
        return []
    return [part for part in parts
            if part.startswith('test_') or part == 'conftest']


def test_no_module_imports_a_test_module():
    offenders = []
    for path in sorted(TESTS.rglob('*.py')):
        package = '.'.join(['tests', *path.relative_to(TESTS).parent.parts])
        offenders += [f'{path.relative_to(TESTS.parent)} imports {name}'
                      for name in imported_modules(path.read_text(), package)
                      if named_test_modules(name)]
    assert offenders == [], 'move what they share to tests/helpers.py'


@pytest.mark.parametrize('source,expected', [
    ('from tests.test_pool import x', 'tests.test_pool'),
    ('import tests.conftest', 'tests.conftest'),
    ('def f():\n    from ..datasets.test_digits import y',
     'tests.datasets.test_digits'),
    ('from . import test_dtypes', 'tests.hardening.test_dtypes'),
])
def test_the_check_sees_every_spelling(source, expected):
    names = list(imported_modules(source, 'tests.hardening'))
    assert expected in names
    assert any(named_test_modules(name) for name in names)
    # What support modules are for passes.
    assert not any(named_test_modules(name) for name in imported_modules(
        'from tests.helpers import make_batch\nfrom .models import build',
        'tests.hardening'))
