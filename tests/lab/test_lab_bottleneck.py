"""Bottleneck costs against the course's hand formulas and GoogLeNet's module (3a)."""

from __future__ import annotations

from cnnlab.lab.bottleneck import (
    INCEPTION_3A,
    SmallInceptionNet,
    cost,
    equal_budget_width,
    module_costs,
)


def test_the_notes_five_by_five_example():
    costs = module_costs()
    assert costs["five_by_five"]["macs"] == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400
    assert costs["five_by_five_reduced"]["macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16
    assert costs["five_by_five_reduced"]["macs"] == 12_443_648


def test_inception_3a_with_and_without_reductions_by_formula():
    c1, c3r, c3, c5r, c5, proj = INCEPTION_3A
    cin, pixels = 192, 28 * 28
    reduced = cin * c1 + cin * c3r + 9 * c3r * c3 + cin * c5r + 25 * c5r * c5 + cin * proj
    naive = cin * c1 + 9 * cin * c3 + 25 * cin * c5
    costs = module_costs()
    assert costs["inception_3a"]["macs"] == pixels * reduced
    assert costs["inception_3a_naive"]["macs"] == pixels * naive
    biases = c1 + c3r + c3 + c5r + c5 + proj
    assert costs["inception_3a"]["params"] == reduced + biases  # weights + biases (no BN)
    assert costs["inception_3a_naive"]["params"] == naive + c1 + c3 + c5


def test_equal_budget_width_is_the_largest_within_budget():
    budget = cost(SmallInceptionNet(True, 1.0), (1, 28, 28))["macs"]
    width = equal_budget_width(budget, 1, 28)
    assert cost(SmallInceptionNet(False, width), (1, 28, 28))["macs"] <= budget
    assert cost(SmallInceptionNet(False, width + 0.05), (1, 28, 28))["macs"] > budget
