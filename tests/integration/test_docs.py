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
a subprocess of its own (``tests/paste_runner.py``), in a scratch folder
that looks like the repository root (its entries linked in), so that files
a page writes stay out of the checkout; shown output is compared as
Sphinx's doctest builder compares it. A page has no hidden code at all
(the walk refuses ``testsetup``, ``testcleanup`` and ``:hide:``): it would
run nowhere, since Sphinx's doctest builder is not run (the paste check runs
everything it would, less the hidden blocks). The runner itself seeds torch
and starts in a scratch folder, the two things a reader need not type; a
page that needs an import, data or a helper shows it.

Every page is walked, so a new one is covered without a change here. Code
of a language the check does not know fails the walk, so that nothing is
skipped unnoticed; :data:`NOT_PASTED` lists the blocks a reader cannot run
offline, and each such block says so on the page.

The scripts a page includes to be saved and started from a shell
(:data:`SCRIPTS`) are not pasted but run as the pages show them: the
distributed-training guide's as one process and under ``torchrun`` with
two, the streaming guide's under ``torchrun`` with two.
"""
import doctest
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from glob import glob

import pytest

from tests.example_scripts import ROOT
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


def _run(args, cwd, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout


# Extracting the visible code ################################################


class Block(dict):
    r"""One visible block: ``kind`` (``"doctest"`` or ``"code"``),
    ``source``, ``want`` (the output shown after a ``testcode``, if any),
    ``options`` (doctest flags by name) and ``line``."""


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


def _scratch_root(path):
    r"""A folder that looks like the repository root to a page (its
    entries linked in), where what the page writes lands: a reader's
    ``data/`` and ``runs/``, which start empty here."""
    os.makedirs(path)
    for name in os.listdir(ROOT):
        if name not in ('.git', 'data', 'runs'):
            os.symlink(osp.join(ROOT, name), osp.join(path, name))
    return path


def paste(page, blocks, workdir, timeout=240):
    r"""Runs :obj:`blocks` as a reader pastes them; returns the exit status,
    the runner's report and the seconds it took."""
    spec = osp.join(workdir, 'blocks.json')
    os.makedirs(workdir)
    with open(spec, 'w') as f:
        json.dump({'page': page, 'blocks': blocks}, f)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, RUNNER, spec], cwd=_scratch_root(
            osp.join(workdir, 'root')),
        env=dict(os.environ, **ENV_THREADS), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, time.perf_counter() - start


# The build and the pages ####################################################


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
def pasted(request, docs_build, tmp_path_factory):
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
        return paste(page, blocks, str(tmp / page.replace(os.sep, '__')))

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


def test_walk_takes_only_what_the_html_shows(tmp_path):
    r"""The extraction on a page with every kind of visible block: a shown
    output attached to its code, other languages and comments skipped, an
    unnamed language refused; and on pages with hidden code, refused."""
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'conf.py').write_text("extensions = ['sphinx.ext.doctest']\n")
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
    fails; a shown exception passes."""
    ok = [Block(kind='code', source='import math\nprint(math.pi > 3)',
                want='True', options={}, line=1),
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
    wrong = ok[:1] + [Block(kind='code', source='print(math.e)', want='2.7',
                            options={}, line=4)]
    code, report, _ = paste('wrong', wrong, str(tmp_path / 'wrong'))
    assert code == 1 and 'visible block 2 of 2 (line 4)' in report


def test_distributed_guide_script_as_one_process(tmp_path):
    code, output = _run([osp.join(DOCS, 'howto', 'train_ddp.py')],
                        cwd=str(tmp_path))
    assert code == 0, output
    assert '1 process(es), step 100, loss' in output


def test_distributed_guide_script_under_torchrun(tmp_path):
    torch = pytest.importorskip('torch')
    if not torch.distributed.is_available() or \
            not torch.distributed.is_gloo_available():
        pytest.skip('torch.distributed with gloo is not available')
    script = osp.join(DOCS, 'howto', 'train_ddp.py')
    code, output = run_torchrun([script], env=_env(), cwd=str(tmp_path))
    if code != 0:
        print(output)
    assert code == 0, f'torchrun failed (exit {code}); output above'
    assert '2 process(es), step 100, loss' in output
    assert (tmp_path / 'runs' / 'ddp' / 'last.ckpt').is_file()


def test_streaming_guide_script_under_torchrun(tmp_path):
    r"""The streaming guide's script, on two small shards (the guide writes
    100,000 rows each; 2,000 keep the 100 steps short)."""
    import numpy as np
    rng = np.random.default_rng(0)
    for rank in range(2):
        np.save(tmp_path / f'shard{rank}.npy',
                rng.normal(size=(2000, 3)).astype(np.float32))
    script = osp.join(DOCS, 'howto', 'train_stream.py')
    code, output = run_torchrun([script], env=_env(), cwd=str(tmp_path))
    assert code == 0, output
    assert '2 process(es), step 100, loss' in output
