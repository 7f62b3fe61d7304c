r"""The layout of the test suite. Outside ``tests/integration/`` (the suites
that cross modules: docs, examples, training, benchmarks, the compile
matrix, conventions, PyG pipelines, hardening) the tests mirror the
package: ``tests/<path>/test_<name>.py`` tests
``torch_geometric_deepsets/<path>/<name>.py`` (or the package
``<path>/<name>/``). What tests share lives in support modules
(tests/helpers.py, tests/fake_datasets.py, ...) at the top of ``tests/`` or
inside ``tests/integration/``; no module imports a test module
(``test_*.py`` or ``conftest.py``), so that each test file can be run,
moved or deleted alone."""
import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
PACKAGE = TESTS.parent / 'torch_geometric_deepsets'

def mirrored_module(test: Path):
    r"""The package file or folder a module test (relative to ``tests/``)
    is about."""
    name = test.name[len('test_'):-len('.py')]
    return PACKAGE.joinpath(*test.parent.parts, name)


def module_tests():
    return sorted(path.relative_to(TESTS)
                  for path in TESTS.rglob('test_*.py')
                  if path.relative_to(TESTS).parts[0] != 'integration')


def test_module_tests_mirror_the_package():
    stray = []
    for test in module_tests():
        module = mirrored_module(test)
        if not (module.with_suffix('.py').is_file() or module.is_dir()):
            stray.append(f'{test}: no {module.relative_to(PACKAGE.parent)}'
                         f'[.py]; name it after the module it tests, or '
                         f'move it to tests/integration/')
    assert stray == []


def test_support_modules_sit_at_the_top_or_in_integration():
    # Folders that mirror the package hold tests (and __init__.py) only.
    misplaced = [path.relative_to(TESTS) for path in TESTS.rglob('*.py')
                 if len(path.relative_to(TESTS).parts) > 1
                 and path.relative_to(TESTS).parts[0] != 'integration'
                 and not path.name.startswith('test_')
                 and path.name != '__init__.py']
    assert misplaced == []


@pytest.mark.parametrize('test,module', [
    ('test_pool.py', 'torch_geometric_deepsets/pool'),
    ('models/test_relu_stack.py',
     'torch_geometric_deepsets/models/relu_stack'),
    ('stream/test_replay.py', 'torch_geometric_deepsets/stream/replay'),
])
def test_the_mirror_of_a_test_module(test, module):
    assert mirrored_module(Path(test)) == PACKAGE.parent / module


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
    ('def f():\n    from ...datasets.test_digits import y',
     'tests.datasets.test_digits'),
    ('from . import test_dtypes', 'tests.integration.hardening.test_dtypes'),
])
def test_the_check_sees_every_spelling(source, expected):
    names = list(imported_modules(source, 'tests.integration.hardening'))
    assert expected in names
    assert any(named_test_modules(name) for name in names)
    # What support modules are for passes.
    assert not any(named_test_modules(name) for name in imported_modules(
        'from tests.helpers import make_batch\nfrom .models import build',
        'tests.integration.hardening'))
