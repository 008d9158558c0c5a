"""Helper library for the FCN semantic-segmentation assignment (CMP Facade Database).

Modules, each with one job:

- :mod:`assignment_lib.data`: the CMP Facade Database (images, label maps, splits).
- :mod:`assignment_lib.transforms`: joint image/label augmentation and normalisation.
- :mod:`assignment_lib.metrics`: confusion matrix, pixel accuracy, IoU, mIoU.
- :mod:`assignment_lib.layers`: the bilinear kernel for transposed convolutions.
- :mod:`assignment_lib.weights`: ImageNet VGG-16 weights for the FCN encoder.
- :mod:`assignment_lib.train`: seeding, training and evaluation loops.
- :mod:`assignment_lib.viz`: plots (label maps, curves, confusion matrices).
- :mod:`assignment_lib.checks`: self-checks to run after each exercise.
- :mod:`assignment_lib.submit`: check the notebooks and pack the zip to hand in.
"""

__version__ = "0.1.0"
