r"""Every public class and function is in the API reference: each object a
public module exports (its ``__all__``) is named by an ``auto*`` directive
of a page under ``docs/reference/``, found by importing what the directive
names (so a renamed or moved object fails here, not only in the docs
build)."""
import importlib
import inspect
import os.path as osp
import re
from glob import glob

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REFERENCE = osp.join(ROOT, 'docs', 'reference')

#: The modules whose ``__all__`` is the public API.
PUBLIC = ['torch_geometric_deepsets', 'torch_geometric_deepsets.models',
          'torch_geometric_deepsets.aggr', 'torch_geometric_deepsets.stream',
          'torch_geometric_deepsets.datasets',
          'torch_geometric_deepsets.testing', 'torch_geometric_deepsets.sets',
          'torch_geometric_deepsets.lightning']

DIRECTIVE = re.compile(r'^\.\. (auto\w+|currentmodule):: (\S+)\s*$')


def documented_names(text):
    r"""The dotted names the ``auto*`` directives of a page document
    (qualified by the page's current module), and the members an
    ``automodule`` lists."""
    names, module = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = DIRECTIVE.match(line)
        if match is None:
            continue
        kind, name = match.groups()
        if kind == 'currentmodule':
            module = name
            continue
        if kind == 'automodule':
            options = []
            for option in lines[i + 1:]:
                if not option.startswith('    '):
                    break
                options.append(option.strip())
            listed = ' '.join(options)
            found = re.search(r':members:(.*?)(?=:\w+:|$)', listed)
            if found:
                names += [f'{name}.{member.strip()}' for member in
                          found.group(1).split(',') if member.strip()]
            continue
        if module is not None and not name.startswith(module + '.') and \
                not name.startswith('torch_geometric_deepsets'):
            name = f'{module}.{name}'
        names.append(name)
    return names


def resolve(dotted):
    r"""The object a dotted name names, as Sphinx finds it: an attribute of
    the longest importable module before it (``pkg.pool`` is the function
    ``pool`` that ``pkg`` exports, not the module ``pkg.pool``)."""
    parts = dotted.split('.')
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    return importlib.import_module(dotted)


def documented_objects():
    found = []
    for page in sorted(glob(osp.join(REFERENCE, '*.rst'))):
        with open(page) as f:
            for name in documented_names(f.read()):
                try:
                    found.append(resolve(name))
                except (ImportError, AttributeError):
                    pass  # the examples' training code lives outside
    return found


def public_objects():
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f'{module_name}.{name}', obj


def test_every_public_object_is_in_the_reference():
    documented = documented_objects()
    missing = sorted({name for name, obj in public_objects()
                      if not any(obj is d for d in documented)})
    assert not missing, (f'not in docs/reference/: {missing}; add an '
                         f'autoclass or autofunction entry')


@pytest.mark.parametrize('text,expected', [
    ('.. currentmodule:: pkg\n\n.. autoclass:: Model\n', ['pkg.Model']),
    ('.. autofunction:: pkg.sub.f\n', ['pkg.sub.f']),
    ('.. automodule:: pkg.t\n    :members: a, b,\n        c\n',
     ['pkg.t.a', 'pkg.t.b', 'pkg.t.c']),
    ('.. automodule:: pkg.t\n    :no-members:\n', []),
])
def test_directives_are_read(text, expected):
    assert documented_names(text) == expected
