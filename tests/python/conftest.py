import os
import sys

# The fp64 reference module sits next to the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
