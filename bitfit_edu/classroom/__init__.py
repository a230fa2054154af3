"""The classroom: the interactive lab's widgets (notebook 07) and every notebook's exercises, with answers
computed from the package and the committed runs.
"""
