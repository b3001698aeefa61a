// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title MarginMath
/// @notice Fixed-point helpers with explicit rounding directions. Units used across liqsim:
///         base 18 decimals, quote/collateral 6 decimals, prices 8 decimals, fractions in ppm.
///         value (quote units) = base * priceE8 / 1e20.
library MarginMath {
    uint256 internal constant PPM = 1e6;
    uint256 internal constant VALUE_SCALE = 1e20; // 1e18 base * 1e8 price / 1e6 quote

    /// @dev floor(a * b / d) for signed a (rounds toward -infinity: against the holder of `a`).
    function mulDivFloor(int256 a, uint256 b, uint256 d) internal pure returns (int256) {
        int256 num = a * int256(b);
        int256 q = num / int256(d);
        if (num < 0 && q * int256(d) != num) q -= 1;
        return q;
    }

    /// @dev ceil(a * b / d) for unsigned values (requirements and fees: against the account).
    function mulDivCeil(uint256 a, uint256 b, uint256 d) internal pure returns (uint256) {
        uint256 num = a * b;
        return num == 0 ? 0 : (num - 1) / d + 1;
    }

    /// @dev ceil(a * b / d) for signed a (rounds toward +infinity).
    function mulDivCeilSigned(int256 a, uint256 b, uint256 d) internal pure returns (int256) {
        return -mulDivFloor(-a, b, d);
    }

    /// @dev ceil(num / d) for signed num and positive d (rounds toward +infinity).
    function ceilDivSigned(int256 num, int256 d) internal pure returns (int256 q) {
        q = num / d;
        if (num > 0 && q * d != num) q += 1;
    }

    /// @dev |x| as uint256.
    function abs(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    /// @dev Notional value of `sizeBase` at `priceE8` in quote units, rounded up.
    function notional(int256 sizeBase, uint256 priceE8) internal pure returns (uint256) {
        return mulDivCeil(abs(sizeBase), priceE8, VALUE_SCALE);
    }

    /// @dev Signed value of `sizeBase` at `priceE8` in quote units, rounded down (against the holder).
    function value(int256 sizeBase, uint256 priceE8) internal pure returns (int256) {
        return mulDivFloor(sizeBase, priceE8, VALUE_SCALE);
    }
}
