"""Chat adapters: each turns one chat protocol into `Message` values and sends lines back."""
