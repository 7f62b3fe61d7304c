r""":mod:`torch_geometric_deepsets.lightning` needs the ``lightning`` extra,
and says so when it is missing; the rest of the package never needs it."""
import subprocess
import sys

# Hides the named top-level packages, as in an environment without them,
# then imports the submodule; prints the error, and which hidden packages
# were imported anyway.
WITHOUT = '''
import sys
hidden = set(sys.argv[1].split(','))
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
import torch_geometric_deepsets
try:
    import torch_geometric_deepsets.lightning
except ImportError as e:
    print(type(e).__name__, e.name)
    print(e)
print(sorted(m for m in sys.modules if m.split('.')[0] in hidden))
'''


def without(*packages):
    return subprocess.run(
        [sys.executable, '-c', WITHOUT, ','.join(packages)],
        capture_output=True, text=True, timeout=120,
        check=True).stdout.splitlines()


def test_a_missing_extra_is_named():
    out = without('lightning', 'pytorch_lightning', 'torchmetrics')
    assert out[0] == 'ModuleNotFoundError lightning'
    assert out[1] == (
        "torch_geometric_deepsets.lightning needs PyTorch Lightning and "
        "torchmetrics (No module named 'lightning'); install them with: "
        "pip install 'torch_geometric_deepsets[lightning]'")
    assert out[2] == '[]'
    # torchmetrics alone missing: the same advice, naming it.
    out = without('torchmetrics')
    assert out[0] == 'ModuleNotFoundError torchmetrics'
    assert "(No module named 'torchmetrics')" in out[1]
    assert "pip install 'torch_geometric_deepsets[lightning]'" in out[1]
