"""The visible self-checks of byol_and_aspp.ipynb pass on the reference solutions and fail, with a
teaching message, on plausible student mistakes (each made by editing the reference source)."""

from __future__ import annotations

import nbformat
import pytest

from assignment_lib import byol_aspp_checks as checks

NB = "notebooks/transfer_learning/byol_and_aspp.ipynb"

#: mistake -> (answer cell, name it defines, [(old, new)] edits of the reference, message regex).
MISTAKES = {
    "aspp_no_pooling_branch": ("aspp", "ASPP", [
        ("        branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(1),",
         "        branches.append(nn.Sequential(nn.Identity(),")], "pooling|differs"),
    "aspp_dilation_without_padding": ("aspp", "ASPP", [("padding=rate,", "")], "padding"),
    "aspp_padding_without_dilation": ("aspp", "ASPP", [("dilation=rate, bias", "bias")], "padding = dilation"),
    "aspp_bias_in_convs": ("aspp", "ASPP", [
        ("nn.Conv2d(in_channels, out_channels, 1, bias=False)", "nn.Conv2d(in_channels, out_channels, 1)")],
        "parameters"),
    "aspp_hardcoded_three_rates": ("aspp", "ASPP", [("for rate in rates:", "for rate in (6, 12, 18):")],
                                   "rates"),
    "aspp_no_projection_bn": ("aspp", "ASPP", [
        ("            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5))",
         "            nn.ReLU(), nn.Dropout(0.5))")], "parameters"),
    "aspp_pool_nearest_corners": ("aspp", "ASPP", [
        ("maps.append(F.interpolate(pooled, size=size, mode=\"bilinear\", align_corners=False))",
         "maps.append(pooled.mean() + 0 * maps[0])")], "differs"),
    "aspp_sum_instead_of_concat": ("aspp", "ASPP", [
        ("return self.project(torch.cat(maps, dim=1))",
         "return self.project(torch.cat([sum(maps)] * len(maps), dim=1))")], "differs"),
    "aspp_pooling_branch_removed": ("aspp", "ASPP", [
        (("        branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(1),\n"
         "                                      nn.Conv2d(in_channels, out_channels, 1, bias=False),\n"
         "                                      nn.BatchNorm2d(out_channels), nn.ReLU()))\n"), ""),
        (("        maps = [branch(x) for branch in self.convs[:-1]]\n        pooled = self.convs[-1](x)\n"
         "        maps.append(F.interpolate(pooled, size=size, mode=\"bilinear\", align_corners=False))\n"),
         "        maps = [branch(x) for branch in self.convs]\n")], "parameters"),
    "loss_mse_of_raw_vectors": ("byol_loss", "byol_loss", [
        (("    p = F.normalize(p, dim=1)\n    z = F.normalize(z.detach(), dim=1)\n"
         "    return (2 - 2 * (p * z).sum(dim=1)).mean()"), "    return F.mse_loss(p, z.detach())")],
        "normalise"),
    "ema_copies_online": ("ema_update", "ema_update", [("xi.mul_(tau).add_(theta, alpha=1 - tau)",
                                                       "xi.copy_(theta)")], "tau"),
    "aspp_not_a_module": ("aspp", "ASPP", [("class ASPP(nn.Module):", "class ASPP:"),
                                           ("        super().__init__()\n", "")], "nn.Module"),
    "loss_no_normalisation": ("byol_loss", "byol_loss", [
        ("    p = F.normalize(p, dim=1)\n    z = F.normalize(z.detach(), dim=1)\n", "    z = z.detach()\n")],
        "normalise"),
    "loss_z_not_detached": ("byol_loss", "byol_loss", [("z.detach()", "z")], "z.detach"),
    "loss_sum_over_batch": ("byol_loss", "byol_loss", [(".mean()", ".sum()")], "mean"),
    "loss_no_reduction": ("byol_loss", "byol_loss", [(").mean()", ")")], "scalar"),
    "loss_normalise_wrong_dim": ("byol_loss", "byol_loss", [("dim=1)\n    z", "dim=0)\n    z"),
                                                             ("z.detach(), dim=1", "z.detach(), dim=0")],
                                 "normalise|2 - 2 cos"),
    "loss_one_minus_cos": ("byol_loss", "byol_loss", [("(2 - 2 * ", "(1 - ")], "2 - 2 cos"),
    "ema_tau_swapped": ("ema_update", "ema_update", [("xi.mul_(tau).add_(theta, alpha=1 - tau)",
                                                     "xi.mul_(1 - tau).add_(theta, alpha=tau)")], "swapped"),
    "ema_without_no_grad": ("ema_update", "ema_update", [
        (("    with torch.no_grad():\n        for xi, theta in zip(target.parameters(), online.parameters()):\n"
          "            xi.mul_(tau).add_(theta, alpha=1 - tau)"),
         ("    for xi, theta in zip(target.parameters(), online.parameters()):\n"
          "        xi.mul_(tau).add_(theta, alpha=1 - tau)"))], "no_grad"),
    "ema_not_in_place": ("ema_update", "ema_update", [("xi.mul_(tau).add_(theta, alpha=1 - tau)",
                                                      "xi = tau * xi + (1 - tau) * theta")], "in place"),
    "ema_updates_online": ("ema_update", "ema_update", [("xi.mul_(tau).add_(theta, alpha=1 - tau)",
                                                        "xi.mul_(tau).add_(theta, alpha=1 - tau); theta.copy_(xi)")],
                           "ONLINE"),
}


def _cells(repo_root) -> dict[str, str]:
    nb = nbformat.read(repo_root / NB, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.cell_type == "code" and "nbgrader" in c.metadata}


@pytest.fixture(scope="module")
def cells(repo_root):
    return _cells(repo_root)


def define(cells, answer, name, edits=()):
    src = cells[answer]
    for old, new in edits:
        assert old in src, f"mutation target {old!r} not in the reference cell {answer}"
        src = src.replace(old, new)
    ns: dict = {}
    exec(cells["byol_imports"], ns)  # noqa: S102 (the trusted reference solution)
    exec(src, ns)  # noqa: S102
    return ns[name]


CHECK = {"aspp": checks.check_aspp, "byol_loss": checks.check_byol_loss,
         "ema_update": checks.check_ema_update}


@pytest.mark.parametrize("answer,name", [("aspp", "ASPP"), ("byol_loss", "byol_loss"),
                                         ("ema_update", "ema_update")])
def test_reference_passes(cells, answer, name, capsys):
    CHECK[answer](define(cells, answer, name))
    assert capsys.readouterr().out.count("\u2713") >= 2


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_mistake_is_caught_with_a_teaching_message(cells, mistake):
    answer, name, edits, pattern = MISTAKES[mistake]
    with pytest.raises(AssertionError, match=pattern):
        CHECK[answer](define(cells, answer, name, edits))


def test_reference_matches_torchvision_by_name(cells):
    """The reference ASPP uses torchvision's names, so weights load by name, not only by order."""
    model = define(cells, "aspp", "ASPP")(16, 8)
    ref = checks.torchvision_aspp(16, 8)
    assert list(model.state_dict()) == list(ref.state_dict())
    assert checks.load_in_order(model, checks.randomize(ref), "ASPP") == "name"
