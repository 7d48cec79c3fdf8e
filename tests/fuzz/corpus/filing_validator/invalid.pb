
9165010411603961x7
urumqi-hnzè (ô¯À‚0ÿÿÿÿÿÿÿÿÿ@%HZ3Urumqi Hongke Intelligent Equipment Group Co., Ltd.