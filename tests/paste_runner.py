r"""Runs the visible code of one documentation page the way a reader does:
pasted block after block into one fresh interpreter, started where the
reader is (the current directory first on ``sys.path``, as in an interactive
session).

Usage: ``python tests/paste_runner.py BLOCKS.json`` (``tests/test_docs.py``
extracts the blocks). Each block is ``{"kind", "source", "want", "options",
"line"}``: ``kind="doctest"`` is a ``>>>`` session, checked line by line as
:mod:`doctest` does; ``kind="code"`` is a script (``testcode``,
``code-block:: python``, a README fence), run as a whole and, where the page
shows its output (``want``), compared with it as Sphinx's doctest builder
compares a ``testoutput``; ``kind="file"`` is a module the page shows to
save, written to the current folder as ``name`` (as the reader saves it).
All blocks share one namespace, which starts empty: whatever a block uses,
the page must have imported or built in a visible block before it.

The first failing block ends the run (the reader is stuck there too); the
exit status is 1 and the report says where.
"""
import builtins
import doctest
import io
import json
import sys
import traceback
from contextlib import redirect_stdout

# As in `python` typed in a terminal: the current directory comes first, not
# this file's folder.
sys.path[0] = ''

# The flags of docs/conf.py's doctest_default_flags; FAIL_FAST stops a block
# at its first failing example, whose error would cascade.
FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.DONT_ACCEPT_TRUE_FOR_1 | doctest.FAIL_FAST)


def _options(block):
    return {doctest.OPTIONFLAGS_BY_NAME[name]: on
            for name, on in block.get('options', {}).items()}


def _run_doctest(block, globs, filename, report):
    test = doctest.DocTestParser().get_doctest(
        block['source'], globs, filename, filename, block['line'])
    # DocTest copies its namespace; the page's blocks must share one.
    test.globs = globs
    for example in test.examples:
        example.options.update(_options(block))
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failures, _ = runner.run(test, out=report.write, clear_globs=False)
    return failures == 0


def _run_code(block, globs, filename, report):
    out = io.StringIO()
    error = None
    try:
        with redirect_stdout(out):
            exec(compile(block['source'], filename, 'exec'), globs)
    except Exception as exc:
        error = exc
    got, want = out.getvalue(), block.get('want')
    if want is None:  # no output shown: the block only has to run
        if error is not None:
            report.write(''.join(traceback.format_exception(error)))
        return error is None
    flags = FLAGS
    for flag, on in _options(block).items():
        flags = flags | flag if on else flags & ~flag
    checker = doctest.OutputChecker()
    # A shown traceback is matched as doctest matches one (doctest's own
    # pattern): the exception's last line against the message shown.
    shown = doctest.DocTestParser._EXCEPTION_RE.match(want)
    if shown is not None and error is not None:
        message = traceback.format_exception_only(error)[-1]
        if checker.check_output(shown.group('msg'), message, flags):
            return True
    elif shown is None and error is None:
        if checker.check_output(want, got, flags):
            return True
    report.write(f'expected:\n{want}\ngot:\n{got}')
    if error is not None:
        report.write(''.join(traceback.format_exception(error)))
    return False


def _save_file(block, globs, filename, report):
    source = block['source']
    with open(block['name'], 'x') as f:  # a page's file overwrites nothing
        f.write(source if source.endswith('\n') else source + '\n')
    return True


RUN = {'doctest': _run_doctest, 'code': _run_code, 'file': _save_file}


def main(path):
    with open(path) as f:
        page = json.load(f)
    # Seeding is the one thing the page may leave to the runner (a reader's
    # numbers differ, the shown ones do not depend on them).
    import torch
    torch.manual_seed(0)

    globs = {'__name__': '__main__', '__builtins__': builtins}
    filename = page['page']
    for number, block in enumerate(page['blocks'], 1):
        report = io.StringIO()
        if not RUN[block['kind']](block, globs, filename, report):
            sys.stdout.write(
                f'{filename}, visible block {number} of '
                f'{len(page["blocks"])} (line {block["line"]}) failed:\n'
                f'{block["source"]}\n--- report ---\n{report.getvalue()}\n')
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
