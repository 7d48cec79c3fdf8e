
9165010411603961X7
urumqi-hnzθ (τ―ΐ‚0ίπ°82@%HZ3Urumqi Hongke Intelligent Equipment Group Co., Ltd.