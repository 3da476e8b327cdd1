// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title A minimal lending book for the external-plugin test
/// @notice Listed assets each have a USD feed (8 decimals, `latestAnswer`) and a liquidation
///         threshold in bps; positions are recorded by the owner (the devnet seeds them), one
///         collateral and one debt amount per account and asset, in the token's raw units.
///         An account is liquidatable when Σ collateral × price × threshold < Σ debt × price.
contract ToyLending {
    address public immutable owner;
    address[] public assets;
    mapping(address => address) public feedOf;
    mapping(address => uint256) public thresholdBps;
    mapping(address => mapping(address => uint256)) public collateralOf;
    mapping(address => mapping(address => uint256)) public debtOf;

    event Listed(address indexed asset, address feed, uint256 thresholdBps);
    event PositionSet(address indexed account, address indexed asset, uint256 collateral, uint256 debt);

    constructor() {
        owner = msg.sender;
    }

    function assetCount() external view returns (uint256) {
        return assets.length;
    }

    function list(address asset, address feed, uint256 thresholdBps_) external {
        require(msg.sender == owner, "ToyLending: not owner");
        require(feedOf[asset] == address(0), "ToyLending: listed");
        require(thresholdBps_ <= 10_000, "ToyLending: threshold");
        assets.push(asset);
        feedOf[asset] = feed;
        thresholdBps[asset] = thresholdBps_;
        emit Listed(asset, feed, thresholdBps_);
    }

    function setPosition(address account, address asset, uint256 collateral, uint256 debt) external {
        require(msg.sender == owner, "ToyLending: not owner");
        require(feedOf[asset] != address(0), "ToyLending: not listed");
        collateralOf[account][asset] = collateral;
        debtOf[account][asset] = debt;
        emit PositionSet(account, asset, collateral, debt);
    }
}
