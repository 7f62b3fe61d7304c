r"""Names of model builders, so that a checkpoint can rebuild its model.

A checkpoint stores hyperparameters, not Python objects (it must load with
:obj:`torch.load(..., weights_only=True)`), so a task records how to build
its model as an import path, :obj:`"module:name"`, plus the keyword
arguments of that call."""
import importlib
import os.path as osp
import sys
from typing import Any, Callable


def import_path(builder: Callable[..., Any]) -> str:
    r"""The :obj:`"module:name"` under which :obj:`builder` (a function or
    class defined at the top level of a module) can be imported again.

    A builder defined in the script being run (module :obj:`__main__`) is
    named after the script's file, which imports under that name from its
    folder. One that a parent package exports is named after the shortest
    such package (:obj:`"torch_geometric_deepsets:DeepSetsPointCloud"`,
    :obj:`"torch_geometric_deepsets.lightning:SetTask"`), which survives
    moves between the package's files.

    Args:
        builder (callable): The function or class.
    """
    module, name = builder.__module__, builder.__qualname__
    if '.' in name or name == '<lambda>':
        raise ValueError(f"the model builder {name!r} must be defined at the "
                         f"top level of a module, so that a checkpoint can "
                         f"import it again")
    if module == '__main__':
        script = getattr(sys.modules['__main__'], '__file__', None)
        if script is None:
            raise ValueError(f"the model builder {name!r} is defined in an "
                             f"interactive session; define it in a module "
                             f"that a checkpoint can import again")
        module = osp.splitext(osp.basename(script))[0]
    parts = module.split('.')
    for end in range(1, len(parts)):
        parent = '.'.join(parts[:end])
        if getattr(sys.modules.get(parent), name, None) is builder:
            return f'{parent}:{name}'
    return f'{module}:{name}'


def locate(path: str) -> Callable[..., Any]:
    r"""The object that :func:`import_path` named :obj:`path`.

    Args:
        path (str): :obj:`"module:name"`.
    """
    module, sep, name = path.partition(':')
    if not sep or not module or not name:
        raise ValueError(f"a model builder must be named 'module:name' "
                         f"(got {path!r})")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"cannot import the model builder {path!r} ({e}); its module "
            f"must be importable where the checkpoint is loaded (on "
            f"sys.path; for the example scripts of the repository, its "
            f"examples/ folder)") from e
