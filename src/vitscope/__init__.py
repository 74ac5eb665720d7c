"""vitscope: what has this Vision Transformer learned?"""

__version__ = "0.1.0"
