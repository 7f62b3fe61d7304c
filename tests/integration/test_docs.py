r"""The documentation builds without a warning, and every page's visible code
runs when a reader pastes it, in order, into a fresh interpreter.

One Sphinx build (the HTML builder with warnings as errors, as ``make docs``
runs it) serves both checks. The paste check reads that build's doctrees,
which hold what the HTML shows: Sphinx's ``testsetup``/``testcleanup`` and
``:hide:`` blocks are comments there, and the reference pages' docstrings
are marked as coming from the package (they are the package's, not the
page's, and are not run here). From each page it takes the visible Python in
document order: ``doctest`` sessions and ``>>>`` blocks, ``testcode`` with
the ``testoutput`` shown after it, ``code-block:: python``, Markdown
``python`` fences and ``literalinclude``\ d Python. The README's ``python``
fences are read with the Markdown parser MyST uses. Each page then runs in
a subprocess of its own (``tests/paste_runner.py``) as a user runs it: in an
empty temporary folder outside the checkout, with the package installed from
a wheel built once per session (``tests/installed.py``), so that whatever a
page imports comes from the installed package or its dependencies, never
from ``examples/``, ``benchmarks/`` or ``tests/``; shown output is compared
as Sphinx's doctest builder compares it. A page has no hidden code at all
(the walk refuses ``testsetup``, ``testcleanup`` and ``:hide:``): it would
run nowhere, since Sphinx's doctest builder is not run (the paste check runs
everything it would, less the hidden blocks). The runner itself seeds torch
and starts in a scratch folder, the two things a reader need not type; a
page that needs an import, data or a helper shows it.

Every page is walked, so a new one is covered without a change here. Code
of a language the check does not know fails the walk, so that nothing is
skipped unnoticed; :data:`NOT_PASTED` lists the blocks a reader cannot run
offline, and each such block says so on the page.

A module a page includes to be saved beside the reader's session
(:data:`MODULES`) is saved into the page's folder where the page shows it,
not pasted. The scripts a page includes to be saved and started from a
shell (:data:`SCRIPTS`) are not pasted but run as the pages show them, with
the installed package: the distributed-training guide's as one process and
under ``torchrun`` with two, the streaming guide's under ``torchrun`` with
two.
"""
import doctest
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from glob import glob

import pytest

from tests.example_scripts import ROOT
from tests.installed import env as user_env
from tests.installed import installed_python
from tests.torchrun import run_torchrun

#: Trainings, subprocesses, builds or compiles, every test here.
pytestmark = pytest.mark.slow

DOCS = osp.join(ROOT, 'docs')
RUNNER = osp.join(ROOT, 'tests', 'paste_runner.py')

# The test extra installs Sphinx and MyST (make test installs them): a
# missing one is a broken install, not a reason to skip the docs.
import myst_parser  # noqa: E402, F401
import sphinx  # noqa: E402, F401
from docutils import nodes  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402 (MyST's parser)

# Every page of the site and the README, relative to the repository root.
PAGES = sorted(
    osp.relpath(path, ROOT)
    for ext in ('rst', 'md')
    for path in glob(osp.join(DOCS, '**', f'*.{ext}'), recursive=True)
    if not osp.relpath(path, DOCS).startswith('_build')) + ['README.md']

# Blocks that are not pasted, by page and a line of the block, with the
# reason. Each needs data that cannot be fetched here, and says so itself:
# its visible text contains "download".
NOT_PASTED = {
    ('README.md', "dataset = ModelNet('data/ModelNet40', '40',"):
        'downloads ModelNet40 (about 0.5 GB) on first use',
}

# Files that pages include (literalinclude) as scripts to save and start
# from a shell, under torchrun; each runs in a test of its own below.
SCRIPTS = {osp.join(DOCS, 'howto', 'train_ddp.py'),
           osp.join(DOCS, 'howto', 'train_stream.py')}
# Files that pages include as modules to save where the reader starts
# Python (under their own name), so that the page's code imports them.
MODULES = {osp.join(DOCS, 'howto', 'digit_models.py')}

PYTHON = {'python', 'python3', 'py'}
PYCON = {'pycon'}
# Code that is not Python and is not run (shell commands, citations, the
# plain text of a code-block that only shows something).
OTHER = {'bash', 'sh', 'shell', 'console', 'bibtex', 'text', 'none', 'yaml',
         'toml', 'json', 'ini'}
# The same threads as the rest of the suite: tiny tensors, where a second
# thread only costs on a busy machine.
ENV_THREADS = {'OMP_NUM_THREADS': '1'}


def _env():
    env = dict(os.environ, **ENV_THREADS)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    return env


def _run(args, cwd, timeout=300, python=None):
    r"""Runs :obj:`python` (Sphinx: this interpreter, the checkout first on
    the path; otherwise as a user starts it) with :obj:`args`."""
    env = _env() if python is None else user_env(**ENV_THREADS)
    proc = subprocess.run([python or sys.executable, *args], cwd=cwd,
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout


def saved(name, folder):
    r"""The how-to script :obj:`name`, saved in :obj:`folder` as a reader
    downloads it."""
    return shutil.copy(osp.join(DOCS, 'howto', name), folder)


# Extracting the visible code ################################################


class Block(dict):
    r"""One visible block: ``kind`` (``"doctest"``, ``"code"`` or
    ``"file"``, a module to save as ``name``), ``source``, ``want`` (the
    output shown after a ``testcode``, if any), ``options`` (doctest flags
    by name) and ``line``."""


def _language(node):
    language = node.get('language')
    if language is None and node.get('source', '').endswith('.py'):
        return 'python'  # a literalinclude of a Python file
    return language


def _flag_names(options):
    names = {flag: name for name, flag in doctest.OPTIONFLAGS_BY_NAME.items()}
    return {names[flag]: on for flag, on in options.items()}


def doctree_blocks(doctree, source):
    r"""The visible Python of the page :obj:`source` in its Sphinx doctree,
    in document order."""
    blocks, previous = [], None
    for node in doctree.findall(lambda n: isinstance(
            n, (nodes.literal_block, nodes.doctest_block, nodes.comment))):
        if node.source != source:  # a docstring rendered by autodoc
            continue
        where = f'{source}:{node.line}'
        test = node.get('testnodetype')
        if isinstance(node, nodes.comment):
            if test is not None:  # testsetup, testcleanup or :hide:
                raise ValueError(
                    f'{where}: a hidden {test} block; nothing runs hidden '
                    f'code, so show it (the paste runner seeds torch and '
                    f'starts in a scratch folder by itself)')
            continue
        if node.get('source') in SCRIPTS:  # a script, run by its own test
            previous = None
            continue
        if node.get('source') in MODULES:  # saved, then imported
            blocks.append(Block(kind='file', source=node.astext(),
                                name=osp.basename(node['source']),
                                line=node.line, options={}))
            previous = None
            continue
        if test in ('doctest', 'testcode', 'testoutput') and \
                'skipif' in node:
            raise ValueError(f'{where}: a visible block with :skipif: '
                             f'is not pasted; list it in NOT_PASTED')
        if isinstance(node, nodes.doctest_block) or test == 'doctest':
            blocks.append(Block(kind='doctest', line=node.line,
                                source=node.get('test', node.astext()),
                                options=_flag_names(node.get('options',
                                                             {}))))
        elif test == 'testcode':
            blocks.append(Block(kind='code', source=node.astext(),
                                line=node.line, options={}))
        elif test == 'testoutput':
            # Sphinx compares a testoutput with the testcode before it.
            if previous != 'testcode':
                raise ValueError(f'{where}: a visible testoutput that does '
                                 f'not follow a visible testcode')
            blocks[-1].update(want=node.astext(),
                              options=_flag_names(node.get('options', {})))
        elif test is not None:
            raise ValueError(f'{where}: unexpected visible {test} block')
        else:
            language = _language(node)
            if language in PYTHON:
                blocks.append(Block(kind='code', source=node.astext(),
                                    line=node.line, options={}))
            elif language in PYCON:
                blocks.append(Block(kind='doctest', source=node.astext(),
                                    line=node.line, options={}))
            elif language not in OTHER:
                raise ValueError(
                    f'{where}: a code block in language {language!r}; '
                    f'name the language (python, pycon, bash, text, ...) '
                    f'so the paste check knows whether to run it')
        previous = test
    return blocks


def markdown_blocks(text, source):
    r"""The ``python`` and ``pycon`` fences of a Markdown file, in order."""
    blocks = []
    for token in MarkdownIt('commonmark').parse(text):
        if token.type not in ('fence', 'code_block'):
            continue
        language = token.info.split()[0] if token.info.strip() else None
        line = token.map[0] + 1
        if language in PYTHON or language in PYCON:
            blocks.append(Block(
                kind='code' if language in PYTHON else 'doctest',
                source=token.content, line=line, options={}))
        elif language not in OTHER:
            raise ValueError(f'{source}:{line}: a code block in language '
                             f'{language!r}; name the language')
    return blocks


def page_blocks(page, doctrees):
    r"""The blocks a reader pastes from :obj:`page`, less
    :data:`NOT_PASTED`, and the blocks left out."""
    path = osp.join(ROOT, page)
    if page.startswith('docs' + os.sep):
        name = osp.splitext(osp.relpath(path, DOCS))[0]
        with open(osp.join(doctrees, f'{name}.doctree'), 'rb') as f:
            blocks = doctree_blocks(pickle.load(f), path)
    else:
        with open(path) as f:
            blocks = markdown_blocks(f.read(), path)
    pasted, left_out = [], []
    for block in blocks:
        keys = [key for key in NOT_PASTED
                if key[0] == page and key[1] in block['source']]
        (left_out if keys else pasted).append(block)
    return pasted, left_out


def paste(page, blocks, workdir, python=sys.executable, timeout=240):
    r"""Runs :obj:`blocks` as a reader pastes them into :obj:`python`
    started in an empty folder below :obj:`workdir` (where what the page
    writes lands: a reader's ``data/`` and ``runs/``); returns the exit
    status, the runner's report and the seconds it took."""
    spec = osp.join(workdir, 'blocks.json')
    cwd = osp.join(workdir, 'cwd')
    os.makedirs(cwd)
    with open(spec, 'w') as f:
        json.dump({'page': page, 'blocks': blocks}, f)
    start = time.perf_counter()
    proc = subprocess.run(
        [python, RUNNER, spec], cwd=cwd, env=user_env(**ENV_THREADS),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout)
    return proc.returncode, proc.stdout, time.perf_counter() - start


# The build, the installed package and the pages ############################


@pytest.fixture(scope='session')
def installed(request, tmp_path_factory):
    r"""The interpreter of an environment with the package installed from
    a wheel (one build per session, shared by pytest-xdist's workers)."""
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, 'workerinput'):  # one folder per worker
        base = base.parent
    return installed_python(base)


@pytest.fixture(scope='module')
def docs_build(tmp_path_factory):
    r"""One HTML build with warnings as errors; its doctrees feed the paste
    check."""
    tmp = tmp_path_factory.mktemp('docs')
    out, doctrees = tmp / 'html', tmp / 'doctrees'
    code, output = _run(['-m', 'sphinx', '-W', '--keep-going', '-b', 'html',
                         '-d', str(doctrees), DOCS, str(out)], cwd=ROOT)
    return code, output, out, doctrees


@pytest.fixture(scope='module')
def pasted(request, docs_build, installed, tmp_path_factory):
    r"""A function that gives a page's paste result. In one pytest process,
    every selected page is pasted up front, two at a time (each subprocess
    spends most of its time importing torch on one core); under
    pytest-xdist, whose workers share the pages out, each test pastes its
    own page (pasting them all in every worker would repeat the work)."""
    doctrees = docs_build[3]
    tmp = tmp_path_factory.mktemp('paste')

    def one(page):
        blocks, _ = page_blocks(page, doctrees)
        if not blocks:
            return 0, '', 0.0
        return paste(page, blocks, str(tmp / page.replace(os.sep, '__')),
                     python=installed)

    if hasattr(request.config, 'workerinput'):  # an xdist worker
        yield one
        return
    pages = [item.callspec.params['page'] for item in request.session.items
             if getattr(item, 'originalname', None) == 'test_page_pastes']
    workers = max(1, min(2, len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(workers) as pool:
        futures = {page: pool.submit(one, page) for page in pages}
        yield lambda page: futures[page].result()


def test_html_builds_without_warnings(docs_build):
    code, output, out, _ = docs_build
    if code != 0:
        print(output)
    assert code == 0, f'sphinx html failed (exit {code}); output above'
    for page in ('index', 'tutorials/getting_started', 'tutorials/training',
                 'howto/variable_size', 'howto/distributed',
                 'reference/models', 'explanation/theory',
                 'explanation/architecture'):
        assert (out / f'{page}.html').is_file(), page
    # Autodoc found the docstrings (an import failure would leave it empty).
    models = (out / 'reference' / 'models.html').read_text()
    assert 'The permutation-invariant Deep Sets model' in models
    assert 'A Deep Sets model conditioned on a per-set context' in models


def test_every_page_is_walked(docs_build):
    doctrees = docs_build[3]
    built = sorted(
        osp.join('docs', osp.splitext(osp.relpath(path, doctrees))[0])
        for path in glob(osp.join(doctrees, '**', '*.doctree'),
                         recursive=True))
    assert built == sorted(osp.splitext(p)[0] for p in PAGES
                           if p != 'README.md')


def test_every_exception_is_on_its_page_and_says_so(docs_build):
    for (page, line), why in NOT_PASTED.items():
        left_out = page_blocks(page, docs_build[3])[1]
        found = [b for b in left_out if line in b['source']]
        assert len(found) == 1, (page, line)
        assert 'download' in found[0]['source'].lower(), (
            f'{page}:{found[0]["line"]} is not pasted ({why}) but does not '
            f'say on the page that it downloads')


@pytest.mark.parametrize('page', PAGES)
def test_page_pastes(page, pasted):
    code, report, seconds = pasted(page)
    print(f'{page}: {seconds:.1f} s')
    assert code == 0, report


def test_walk_takes_only_what_the_html_shows(tmp_path, monkeypatch):
    r"""The extraction on a page with every kind of visible block: a shown
    output attached to its code, a module to save, other languages and
    comments skipped, an unnamed language refused; and on pages with hidden
    code, refused."""
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'conf.py').write_text("extensions = ['sphinx.ext.doctest']\n")
    (src / 'mod.py').write_text('X = 1\n')
    monkeypatch.setattr(sys.modules[__name__], 'MODULES',
                        {str(src / 'mod.py')})
    (src / 'index.rst').write_text('''Page
====

..
    A comment is not code.

.. doctest::

    >>> import torch
    >>> torch.ones(1)
    tensor([1.])

.. testcode::

    print(1)

.. testoutput::

    1

.. code-block:: bash

    python run.py

.. literalinclude:: mod.py

.. code-block:: python

    x = 3

>>> x
3
''')
    hidden = {
        'setup': '.. testsetup::\n\n    import torch\n',
        'cleanup': '.. testcleanup::\n\n    del x\n',
        'code': '.. testcode::\n    :hide:\n\n    x = 1\n',
        'output': ('.. testcode::\n\n    print(1)\n\n'
                   '.. testoutput::\n    :hide:\n\n    1\n'),
    }
    for name, text in hidden.items():
        (src / f'{name}.rst').write_text(f'{name}\n====\n\n{text}')
    build = tmp_path / 'build'
    code, output = _run(['-m', 'sphinx', '-q', '-b', 'dummy', '-d',
                         str(build), str(src), str(build / 'out')],
                        cwd=str(tmp_path))
    assert code == 0, output

    def walk(name):
        with open(build / f'{name}.doctree', 'rb') as f:
            return doctree_blocks(pickle.load(f), str(src / f'{name}.rst'))

    blocks = walk('index')
    assert [(b['kind'], b['source'], b.get('want')) for b in blocks] == [
        ('doctest', '>>> import torch\n>>> torch.ones(1)\ntensor([1.])',
         None),
        ('code', 'print(1)', '1'),
        ('file', 'X = 1\n', None),
        ('code', 'x = 3', None),
        ('doctest', '>>> x\n3', None),
    ]
    for name in hidden:
        with pytest.raises(ValueError, match='a hidden test'):
            walk(name)
    with pytest.raises(ValueError, match="language None; name the language"):
        markdown_blocks('```\nx = 1\n```\n', 'README.md')


def test_runner_stops_a_reader_where_a_reader_stops(tmp_path):
    r"""The runner shares one namespace between the blocks and starts it
    empty: a name defined only in hidden setup fails; a wrong shown output
    fails; a shown exception passes; a module the page shows is saved for
    the next blocks to import."""
    ok = [Block(kind='file', name='shown.py', source='TWO = 2', options={},
                line=1),
          Block(kind='code', source='import math\nimport shown\n'
                'print(math.pi > 3, shown.TWO)', want='True 2', options={},
                line=1),
          Block(kind='doctest', source='>>> math.floor(2.5)\n2',
                options={}, line=5),
          Block(kind='code', source='math.sqrt(-1)', options={}, line=8,
                want='Traceback (most recent call last):\n    ...\n'
                     'ValueError: math domain error')]
    code, report, _ = paste('ok', ok, str(tmp_path / 'ok'))
    assert code == 0, report
    missing = [Block(kind='doctest', source='>>> torch.ones(1)\n'
                     'tensor([1.])', options={}, line=3)]
    code, report, _ = paste('missing', missing, str(tmp_path / 'missing'))
    assert code == 1 and "NameError: name 'torch' is not defined" in report
    wrong = ok[:2] + [Block(kind='code', source='print(math.e)', want='2.7',
                            options={}, line=4)]
    code, report, _ = paste('wrong', wrong, str(tmp_path / 'wrong'))
    assert code == 1 and 'visible block 3 of 3 (line 4)' in report


def test_distributed_guide_script_as_one_process(tmp_path, installed):
    code, output = _run([saved('train_ddp.py', tmp_path)], cwd=str(tmp_path),
                        python=installed)
    assert code == 0, output
    assert '1 process(es), step 100, loss' in output


def test_distributed_guide_script_under_torchrun(tmp_path, installed):
    torch = pytest.importorskip('torch')
    if not torch.distributed.is_available() or \
            not torch.distributed.is_gloo_available():
        pytest.skip('torch.distributed with gloo is not available')
    code, output = run_torchrun([saved('train_ddp.py', tmp_path)],
                                env=user_env(**ENV_THREADS),
                                cwd=str(tmp_path), python=installed)
    if code != 0:
        print(output)
    assert code == 0, f'torchrun failed (exit {code}); output above'
    assert '2 process(es), step 100, loss' in output
    assert (tmp_path / 'runs' / 'ddp' / 'last.ckpt').is_file()


def test_streaming_guide_script_under_torchrun(tmp_path, installed):
    r"""The streaming guide's script, on two small shards (the guide writes
    100,000 rows each; 2,000 keep the 100 steps short)."""
    import numpy as np
    rng = np.random.default_rng(0)
    for rank in range(2):
        np.save(tmp_path / f'shard{rank}.npy',
                rng.normal(size=(2000, 3)).astype(np.float32))
    code, output = run_torchrun([saved('train_stream.py', tmp_path)],
                                env=user_env(**ENV_THREADS),
                                cwd=str(tmp_path), python=installed)
    assert code == 0, output
    assert '2 process(es), step 100, loss' in output


# Where the pages' code comes from ##########################################

WHERE = """
import importlib.util, json, sys
import torch_geometric_deepsets, torch_geometric_deepsets.lightning
from importlib.metadata import distribution
dist = distribution('torch_geometric_deepsets')
print(json.dumps({
    'file': torch_geometric_deepsets.__file__,
    'origin': json.loads(dist.read_text('direct_url.json') or '{}'),
    'found': [name for name in sys.argv[1:]
              if importlib.util.find_spec(name) is not None],
}))
"""


def test_pages_run_on_the_installed_wheel_only(installed, tmp_path):
    r"""Where a page runs, the package is the installed wheel's copy, and
    nothing of the checkout can be imported: not the examples' modules,
    the benchmarks' or the tests'."""
    names = ['tests', 'examples', 'benchmarks', 'set_task', 'report',
             'digit_sum_text', 'allocator', 'fake_datasets']
    code, output = _run(['-c', WHERE, *names], cwd=str(tmp_path),
                        python=installed)
    assert code == 0, output
    where = json.loads(output.splitlines()[-1])
    assert not where['file'].startswith(ROOT + os.sep), where
    # Installed from a wheel (an editable install records a folder).
    assert where['origin']['url'].endswith('.whl'), where
    assert 'dir_info' not in where['origin'], where
    assert where['found'] == []
