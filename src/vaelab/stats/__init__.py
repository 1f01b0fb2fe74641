"""How sure a number is: intervals over seeds and test images, and paired comparisons."""
