r"""Input and output widths: a rho that cannot take what phi pools to is
named with both widths, when the model is built or at the first call."""
import pytest
import torch

from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsInvariant,
)


class Doubling(torch.nn.Module):
    r"""A phi whose output width shows only when it runs."""
    def __init__(self, in_channels):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, 6)

    def forward(self, x):
        return torch.cat([self.lin(x), self.lin(x).relu()], dim=-1)



def test_custom_phi_of_the_wrong_width_names_both_widths():
    # Widths a channel list or Sequential shows are checked when the model
    # is built; a custom phi's at the first call.
    with pytest.raises(ValueError, match="'rho' takes 8 input channels but "
                       r"'phi' pooled with SumAggregation\(\) gives 12"):
        DeepSetsInvariant(torch.nn.Sequential(torch.nn.Linear(3, 12),
                                              torch.nn.ReLU()), [8, 2])
    model = DeepSetsInvariant(Doubling(3), [8, 2])
    with pytest.raises(ValueError, match=r"'rho' takes 8 input channels but "
                       r"'phi' pooled with SumAggregation\(\) gives 12 "
                       r"features per set; make rho's input width 12"):
        model(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    conditional = DeepSetsConditional(Doubling(5), torch.nn.Linear(9, 1),
                                      context_channels=2)
    with pytest.raises(ValueError, match=r"'rho' takes 9 input channels but "
                       r"'phi' pooled with SumAggregation\(\) gives 12 \+ 2 "
                       r"context features per set; make rho's input width "
                       r"14"):
        conditional(torch.randn(4, 3), torch.randn(2, 2),
                    torch.tensor([0, 0, 1, 1]))
