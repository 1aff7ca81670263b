"""vision_benchmarks: pretext tasks, contrastive methods and evaluation protocols on images.

Built on ``core_ssl``; the method recipes and evaluation protocols live here.
"""
