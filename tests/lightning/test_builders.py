r"""How a checkpoint names a model builder (:func:`import_path`) and finds
it again (:func:`locate`)."""
import subprocess
import sys

import pytest

import torch_geometric_deepsets.lightning.task as task_module
from torch_geometric_deepsets import DeepSetsInvariant, DeepSetsPointCloud
from torch_geometric_deepsets.lightning import SetTask, import_path, locate


def builder():
    return DeepSetsInvariant(phi=[2, 4], rho=[4, 1])


@pytest.mark.parametrize('obj,path', [
    # Exported by the package: its public name, whichever file defines it.
    (DeepSetsInvariant, 'torch_geometric_deepsets:DeepSetsInvariant'),
    (DeepSetsPointCloud, 'torch_geometric_deepsets:DeepSetsPointCloud'),
    # Exported by a subpackage only: the shortest package that exports it.
    (SetTask, 'torch_geometric_deepsets.lightning:SetTask'),
    # Exported by no parent: its own module.
    (builder, 'tests.lightning.test_builders:builder'),
    (task_module._pct_start, 'torch_geometric_deepsets.lightning.task:'
     '_pct_start'),
])
def test_import_path_names_the_public_home(obj, path):
    assert import_path(obj) == path
    assert locate(path) is obj


def test_a_script_names_its_builders_after_its_file(tmp_path):
    script = tmp_path / 'my_experiment.py'
    script.write_text(
        'from torch_geometric_deepsets.lightning import import_path\n'
        'def build():\n    pass\n'
        'print(import_path(build))\n')
    out = subprocess.run([sys.executable, str(script)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == 'my_experiment:build'


def test_builders_a_checkpoint_cannot_import_again():
    def nested():
        pass
    with pytest.raises(ValueError, match="'test_builders_a_checkpoint_"
                       "cannot_import_again.<locals>.nested' must be "
                       "defined at the top level"):
        import_path(nested)
    with pytest.raises(ValueError, match='top level of a module'):
        import_path(lambda: None)
    interactive = type(builder)(builder.__code__, {'__name__': '__main__'},
                                'build')
    interactive.__module__ = '__main__'
    main = sys.modules['__main__']
    file = main.__dict__.pop('__file__', None)
    try:
        with pytest.raises(ValueError, match='interactive session'):
            import_path(interactive)
    finally:
        if file is not None:
            main.__file__ = file


@pytest.mark.parametrize('path,error,match', [
    ('nocolon', ValueError, "must be named 'module:name'"),
    (':f', ValueError, "must be named 'module:name'"),
    ('no_such_module:f', ImportError, r"cannot import the model builder "
     r"'no_such_module:f' \(No module named 'no_such_module'\); its module "
     r"must be importable where the checkpoint is loaded"),
    ('torch_geometric_deepsets:Nothing', ImportError, 'has no attribute'),
])
def test_locate_errors_say_what_is_missing(path, error, match):
    with pytest.raises(error, match=match):
        locate(path)

