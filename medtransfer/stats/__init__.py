"""Statistics a reviewer asks for: confidence intervals, paired comparisons and calibration.

Bootstrap confidence intervals over test images (or patients), DeLong's AUROC variance, paired comparisons
with Holm's correction, and calibration.

Bootstrap resamples are per-sample count weights (how often each test image is drawn), so one resample serves
every metric and every model evaluated on the same test images: that is what makes comparisons paired.
"""
