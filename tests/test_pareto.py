import pytest

from bench.pareto import hypervolume, pareto_mask


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
