r"""Sphinx configuration.

`make docs` builds the HTML with warnings as errors; tests/test_docs.py runs
that build and then runs the visible code of every page as a reader pastes
it. Nothing here touches the network: there is no intersphinx (its
inventories would have to be downloaded); references to PyG and PyTorch
objects become plain links to their documentation instead (see
:func:`external_link`).
"""
import doctest
import importlib
import inspect
import os
import sys

from docutils import nodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Document the package of this checkout, not an installed copy.
sys.path.insert(0, ROOT)

import torch_geometric_deepsets  # noqa: E402

project = 'torch_geometric_deepsets'
author = 'torch_geometric_deepsets developers'
copyright = 'torch_geometric_deepsets developers'
version = release = torch_geometric_deepsets.__version__

extensions = [
    'sphinx.ext.autodoc',
    # The docstrings follow PyG: Google-style "Args:" / "Returns:" sections.
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.doctest',
    'sphinx.ext.viewcode',
    'myst_parser',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build']
templates_path = []

html_theme = 'alabaster'
html_static_path = ['_static']
html_title = 'torch_geometric_deepsets'
html_theme_options = {
    'description': 'Deep Sets for PyTorch Geometric',
    'fixed_sidebar': True,
    'page_width': '1100px',
    'sidebar_width': '230px',
}

# Types are in the "Args:" sections, PyG-style; the alias unions would only
# clutter the signatures.
autodoc_typehints = 'none'
autodoc_member_order = 'bysource'
autoclass_content = 'class'
autodoc_default_options = {'members': True, 'show-inheritance': True}

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

myst_heading_anchors = 3

# sphinx.ext.doctest gives the pages their testcode/testoutput/doctest
# blocks; tests/test_docs.py runs them as a reader pastes them (visible code
# only, in a fresh interpreter), with these flags (tests/paste_runner.py):
# exception messages are compared, with ELLIPSIS for the variable parts. No
# global setup: every page imports and builds what it uses.
doctest_default_flags = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                         | doctest.DONT_ACCEPT_TRUE_FOR_1)

# Plain links to the documentation of PyG and PyTorch #########################

PYG_DOCS = 'https://pytorch-geometric.readthedocs.io/en/latest/'
TORCH_DOCS = 'https://docs.pytorch.org/docs/stable/'

# PyG documents the classes of these namespaces on pages of their own,
# generated/<namespace>.<Class>.html, and lists everything else on one page
# per module, modules/<module>.html#<full name>.
PYG_GENERATED = ('nn.conv', 'nn.aggr', 'nn.models', 'nn.norm', 'datasets',
                 'transforms', 'data')
# Pages that list a whole module (anchors are full names), by the part of
# the name between "torch_geometric." and the object's own name; objects
# that PyG does not document stay plain text.
PYG_MODULE_PAGES = {
    ('utils', ): 'utils',
    ('loader', ): 'loader',
    ('nn', 'sequential'): 'nn',
    ('debug', ): 'root',
    ('seed_everything', ): 'root',
    ('is_debug_enabled', ): 'root',
}
PYG_MODULES = {'torch_geometric.explain': 'explain'}
# Short names in docstrings ("aggr (str or Aggregation)") and re-exports.
ALIASES = {
    'Aggregation': 'torch_geometric.nn.aggr.Aggregation',
    'Module': 'torch.nn.Module',
    'seed_everything': 'torch_geometric.seed_everything',
}
# PyTorch objects documented on a shared page rather than their own.
TORCH_PAGES = {
    'torch.Tensor': 'tensors.html#torch.Tensor',
    'torch.device': 'tensor_attributes.html#torch.device',
    'torch.dtype': 'tensor_attributes.html#torch.dtype',
}


def _lookup(target):
    r"""The object named :obj:`target`, or :obj:`None`."""
    parts = target.split('.')
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _pyg_url(target):
    if target in PYG_MODULES:
        return f'{PYG_DOCS}modules/{PYG_MODULES[target]}.html'
    parts = target.split('.')
    # The class or function the target is or belongs to (for methods).
    for cut in range(len(parts), 1, -1):
        owner = _lookup('.'.join(parts[:cut]))
        if inspect.isclass(owner) or inspect.isfunction(owner):
            name, rest = parts[cut - 1], parts[cut:]
            break
    else:
        return None
    for namespace in PYG_GENERATED:
        module = _lookup(f'torch_geometric.{namespace}')
        if inspect.isclass(owner) and getattr(module, name, None) is owner:
            page = f'torch_geometric.{namespace}.{name}'
            anchor = f'#{page}.{".".join(rest)}' if rest else ''
            return f'{PYG_DOCS}generated/{page}.html{anchor}'
    key = tuple(parts[1:-1]) if len(parts) > 2 else tuple(parts[1:])
    page = PYG_MODULE_PAGES.get(key)
    if page is None:
        return None
    return f'{PYG_DOCS}modules/{page}.html#{target}'


def _torch_url(target):
    if target in TORCH_PAGES:
        return TORCH_DOCS + TORCH_PAGES[target]
    obj = _lookup(target)
    if obj is None:
        return None
    if target.startswith('torch.utils.data.'):
        return f'{TORCH_DOCS}data.html#{target}'
    if inspect.ismodule(obj):
        # torch.autograd.gradcheck: a module named after its function.
        inner = getattr(obj, target.rsplit('.', 1)[1], None)
        if not callable(inner):
            return None
        target = f'{target}.{inner.__name__}'
    elif inspect.isclass(obj) and target.startswith('torch.nn.modules.'):
        # Bases of modules are shown by their defining module; the page is
        # named after the public torch.nn name.
        if getattr(importlib.import_module('torch.nn'), obj.__name__,
                   None) is not obj:
            return None
        target = f'torch.nn.{obj.__name__}'
    # Functions, classes and Tensor methods have generated pages.
    return f'{TORCH_DOCS}generated/{target}.html'


def external_link(app, env, node, contnode):
    r"""Resolves a Python reference that this site does not document into a
    link to PyG's or PyTorch's documentation (no inventory, no network)."""
    if node.get('refdomain') != 'py':
        return None
    target = node.get('reftarget', '')
    target = ALIASES.get(target, target)
    if target.startswith('torch_geometric.'):
        url = _pyg_url(target)
    elif target.startswith('torch.'):
        url = _torch_url(target)
    else:
        return None
    if url is None:
        return None
    ref = nodes.reference('', '', internal=False, refuri=url,
                          reftitle=target)
    ref += contnode
    return ref


def setup(app):
    app.connect('missing-reference', external_link)
