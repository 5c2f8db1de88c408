import pytest

from removal_bench.measuring.pareto import constrained_best, front_hypervolume, hypervolume, pareto_mask


def test_pareto_mask_keeps_only_undominated_points():
    accuracy = [0.90, 0.85, 0.80, 0.95, 0.85]
    leakage = [0.80, 0.60, 0.70, 0.90, 0.60]
    # 0.80/0.70 is dominated by 0.85/0.60; the two 0.85/0.60 are equal and both kept
    assert pareto_mask(accuracy, leakage) == [True, True, False, True, True]


def test_pareto_mask_ignores_nan_points():
    assert pareto_mask([0.9, float("nan")], [0.5, 0.1]) == [True, False]


def test_hypervolume_of_one_point_is_its_box():
    assert hypervolume([(0.9, 0.4)], (0.5, 0.0)) == pytest.approx(0.4 * 0.4)


def test_hypervolume_of_a_staircase():
    # points (x, y), both maximised, reference (0, 0):
    # (1, 0.2), (0.6, 0.5), (0.3, 0.9) -> 1*0.2 + 0.6*0.3 + 0.3*0.4 = 0.5
    points = [(1.0, 0.2), (0.6, 0.5), (0.3, 0.9), (0.2, 0.1)]
    assert hypervolume(points, (0.0, 0.0)) == pytest.approx(0.5)


def test_hypervolume_ignores_points_below_the_reference():
    assert hypervolume([(0.4, 0.5), (0.8, -0.1)], (0.5, 0.0)) == 0.0


def test_front_hypervolume_uses_one_minus_leakage_norm_above_chance():
    # (acc, leak_norm) -> (acc, 1 - leak_norm): (0.9, 0.4), (0.8, 0.8), (0.7, 0.9), (0.6, 0.5) dominated,
    # reference (0.5, 0): 0.4*0.4 + 0.3*(0.8-0.4) + 0.2*(0.9-0.8) = 0.16 + 0.12 + 0.02 = 0.30
    accuracy = [0.9, 0.8, 0.7, 0.6, 0.45, float("nan")]
    leakage_norm = [0.6, 0.2, 0.1, 0.5, 0.0, 0.0]
    assert front_hypervolume(accuracy, leakage_norm, chance_accuracy=0.5) == pytest.approx(0.30)


def test_front_hypervolume_per_method_and_chance_from_the_number_of_classes():
    # three classes: chance 1/3; one configuration at (0.6, leak_norm 0.25) -> (0.6 - 1/3) * 0.75 = 0.2
    assert front_hypervolume([0.6], [0.25], chance_accuracy=1 / 3) == pytest.approx(0.2)
    # a method whose only configuration is at chance has no area, however private it is
    assert front_hypervolume([1 / 3], [0.0], chance_accuracy=1 / 3) == 0.0
    # leaking more than chance attackers do (leak_norm 1) adds nothing either
    assert front_hypervolume([0.9], [1.0], chance_accuracy=0.5) == 0.0


@pytest.mark.parametrize("bound, expected", [(None, 0), (0.7, 1), (0.6, 1), (0.5, None)])
def test_constrained_best_is_the_best_validation_accuracy_within_the_leakage_bound(bound, expected):
    val_accuracy = [0.90, 0.85, 0.80, float("nan")]
    val_leakage = [0.80, 0.60, 0.60, 0.10]
    assert constrained_best(val_accuracy, val_leakage, bound) == expected


def test_constrained_best_breaks_ties_on_lower_leakage_then_order():
    assert constrained_best([0.8, 0.8, 0.8], [0.6, 0.55, 0.55], 0.7) == 1
