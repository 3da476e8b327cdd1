"""Names shared by the Compound V2 plugin's parts."""

PROTOCOL = "compound-v2"
# the asset address of native ETH (CEther has no underlying()): the usual 0xEeee… sentinel
NATIVE_ASSET = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"
MANTISSA = 10**18
