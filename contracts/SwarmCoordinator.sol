// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.29;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";

/// @title SwarmCoordinator (swarmd's own implementation)
/// @notice Round/stage clock, bootnode list, peer registry, rewards and winner votes of an
/// RL swarm. Written for swarmd from the published ABI of Gensyn's coordinator (the 0.4.2
/// ABI shipped with rl-swarm): every function, event and custom error keeps its signature,
/// so a client written for the original talks to this contract unchanged.
/// @dev Deployed behind an ERC1967 proxy and upgraded UUPS-style by the owner, like the
/// original. Submissions are keyed by peer id (the 0.4.3+ rule), so one account may run
/// several peers; `hasSubmittedRoundStageReward` answers for an account (0.4.2 ABI) and,
/// as an added overload, for a peer id.
contract SwarmCoordinator is Initializable, UUPSUpgradeable {
    bytes32 public constant OWNER_ROLE = keccak256("OWNER_ROLE");
    bytes32 public constant STAGE_MANAGER_ROLE = keccak256("STAGE_MANAGER_ROLE");
    bytes32 public constant BOOTNODE_MANAGER_ROLE = keccak256("BOOTNODE_MANAGER_ROLE");

    /// Stages per round, as in the 0.4.x contracts the shipped ABI describes.
    uint256 private constant STAGES = 3;
    /// Length of each leaderboard.
    uint256 private constant BOARD_SIZE = 100;

    error PeerIdAlreadyRegistered();
    error RewardAlreadySubmitted();
    error WinnerAlreadyVoted();
    error InvalidRoundNumber();
    error InvalidStageNumber();
    error InvalidVote();
    error InvalidVoterPeerId();
    error InvalidBootnodeIndex();
    error StageOutOfBounds();
    error OnlyOwner();
    error OnlyStageManager();
    error OnlyBootnodeManager();

    event PeerRegistered(address indexed eoa, string peerId);
    event RewardSubmitted(
        address indexed account, uint256 indexed roundNumber, uint256 indexed stageNumber, int256 reward, string peerId
    );
    event CumulativeRewardsUpdated(address indexed account, string peerId, int256 totalRewards);
    event WinnerSubmitted(address indexed account, string peerId, uint256 indexed roundNumber, string[] winners);
    event RoundAdvanced(uint256 indexed newRoundNumber);
    event StageAdvanced(uint256 indexed roundNumber, uint256 newStage);
    event BootnodesAdded(address indexed manager, uint256 count);
    event BootnodeRemoved(address indexed manager, uint256 index);
    event AllBootnodesCleared(address indexed manager);
    event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);
    event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender);

    /// A top-N list kept sorted by score, highest first.
    struct Board {
        string[] peers;
        uint256[] scores;
    }

    uint256 private _round;
    uint256 private _stage;
    mapping(bytes32 role => mapping(address account => bool)) private _roles;
    string[] private _bootnodes;

    mapping(string peerId => address) private _eoaOf;
    mapping(address eoa => string[]) private _peersOf;

    mapping(uint256 round => mapping(uint256 stage => mapping(string peerId => bool))) private _peerSubmitted;
    mapping(uint256 round => mapping(uint256 stage => mapping(address account => bool))) private _accountSubmitted;
    mapping(uint256 round => mapping(uint256 stage => mapping(address account => int256))) private _stageReward;
    mapping(string peerId => int256) private _totalRewards;

    mapping(uint256 round => mapping(string voter => string[])) private _votes;
    mapping(uint256 round => mapping(string peerId => uint256)) private _roundVotes;
    mapping(string voter => uint256) private _voteCount;
    mapping(string peerId => uint256) private _wins;
    mapping(string peerId => bool) private _isVoter;
    mapping(string peerId => bool) private _isVotedPeer;
    uint256 private _uniqueVoters;
    uint256 private _uniqueVotedPeers;
    Board private _voterBoard;
    Board private _winnerBoard;

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    /// Grants all three roles to `owner_`; callable once, through the proxy.
    function initialize(address owner_) external initializer {
        __UUPSUpgradeable_init();
        _grant(OWNER_ROLE, owner_);
        _grant(STAGE_MANAGER_ROLE, owner_);
        _grant(BOOTNODE_MANAGER_ROLE, owner_);
    }

    modifier onlyRole(bytes32 role, bytes4 failure) {
        if (!_roles[role][msg.sender]) {
            assembly ("memory-safe") {
                mstore(0, failure)
                revert(0, 4)
            }
        }
        _;
    }

    // ---- roles -------------------------------------------------------------------------

    function hasRole(bytes32 role, address account) external view returns (bool) {
        return _roles[role][account];
    }

    function grantRole(bytes32 role, address account) external onlyRole(OWNER_ROLE, OnlyOwner.selector) {
        _grant(role, account);
    }

    function revokeRole(bytes32 role, address account) external onlyRole(OWNER_ROLE, OnlyOwner.selector) {
        if (_roles[role][account]) {
            _roles[role][account] = false;
            emit RoleRevoked(role, account, msg.sender);
        }
    }

    function _grant(bytes32 role, address account) private {
        if (!_roles[role][account]) {
            _roles[role][account] = true;
            emit RoleGranted(role, account, msg.sender);
        }
    }

    function _authorizeUpgrade(address) internal view override onlyRole(OWNER_ROLE, OnlyOwner.selector) {}

    // ---- round and stage ---------------------------------------------------------------

    function currentRound() external view returns (uint256) {
        return _round;
    }

    function currentStage() external view returns (uint256) {
        return _stage;
    }

    function stageCount() public pure returns (uint256) {
        return STAGES;
    }

    /// Advances the stage; from the last stage, starts the next round at stage 0.
    function updateStageAndRound()
        external
        onlyRole(STAGE_MANAGER_ROLE, OnlyStageManager.selector)
        returns (uint256, uint256)
    {
        if (_stage + 1 >= STAGES) {
            _round += 1;
            _stage = 0;
            emit RoundAdvanced(_round);
        } else {
            _stage += 1;
        }
        emit StageAdvanced(_round, _stage);
        return (_round, _stage);
    }

    // ---- bootnodes ---------------------------------------------------------------------

    function getBootnodes() external view returns (string[] memory) {
        return _bootnodes;
    }

    function getBootnodesCount() external view returns (uint256) {
        return _bootnodes.length;
    }

    function addBootnodes(string[] calldata newBootnodes)
        external
        onlyRole(BOOTNODE_MANAGER_ROLE, OnlyBootnodeManager.selector)
    {
        for (uint256 i = 0; i < newBootnodes.length; i++) {
            _bootnodes.push(newBootnodes[i]);
        }
        emit BootnodesAdded(msg.sender, newBootnodes.length);
    }

    /// Removes one bootnode by moving the last one into its slot (order is not kept).
    function removeBootnode(uint256 index) external onlyRole(BOOTNODE_MANAGER_ROLE, OnlyBootnodeManager.selector) {
        uint256 n = _bootnodes.length;
        if (index >= n) revert InvalidBootnodeIndex();
        if (index != n - 1) _bootnodes[index] = _bootnodes[n - 1];
        _bootnodes.pop();
        emit BootnodeRemoved(msg.sender, index);
    }

    function clearBootnodes() external onlyRole(BOOTNODE_MANAGER_ROLE, OnlyBootnodeManager.selector) {
        delete _bootnodes;
        emit AllBootnodesCleared(msg.sender);
    }

    // ---- peers -------------------------------------------------------------------------

    /// Links `peerId` to the sender for good: a peer id has one account, an account many peers.
    function registerPeer(string calldata peerId) external {
        if (_eoaOf[peerId] != address(0)) revert PeerIdAlreadyRegistered();
        _eoaOf[peerId] = msg.sender;
        _peersOf[msg.sender].push(peerId);
        emit PeerRegistered(msg.sender, peerId);
    }

    function getPeerId(address[] calldata eoas) external view returns (string[][] memory peerIds) {
        peerIds = new string[][](eoas.length);
        for (uint256 i = 0; i < eoas.length; i++) {
            peerIds[i] = _peersOf[eoas[i]];
        }
    }

    function getEoa(string[] calldata peerIds) external view returns (address[] memory eoas) {
        eoas = new address[](peerIds.length);
        for (uint256 i = 0; i < peerIds.length; i++) {
            eoas[i] = _eoaOf[peerIds[i]];
        }
    }

    // ---- rewards -----------------------------------------------------------------------

    /// One reward per (round, stage, peer id), from the account that registered the peer.
    function submitReward(uint256 roundNumber, uint256 stageNumber, int256 reward, string calldata peerId) external {
        if (roundNumber > _round) revert InvalidRoundNumber();
        if (roundNumber == _round ? stageNumber > _stage : stageNumber >= STAGES) revert InvalidStageNumber();
        if (_eoaOf[peerId] != msg.sender) revert InvalidVoterPeerId();
        if (_peerSubmitted[roundNumber][stageNumber][peerId]) revert RewardAlreadySubmitted();
        _peerSubmitted[roundNumber][stageNumber][peerId] = true;
        _accountSubmitted[roundNumber][stageNumber][msg.sender] = true;
        _stageReward[roundNumber][stageNumber][msg.sender] += reward;
        int256 total = _totalRewards[peerId] + reward;
        _totalRewards[peerId] = total;
        emit RewardSubmitted(msg.sender, roundNumber, stageNumber, reward, peerId);
        emit CumulativeRewardsUpdated(msg.sender, peerId, total);
    }

    function getRoundStageReward(uint256 roundNumber, uint256 stageNumber, address[] calldata accounts)
        external
        view
        returns (int256[] memory rewards)
    {
        if (stageNumber >= STAGES) revert StageOutOfBounds();
        rewards = new int256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            rewards[i] = _stageReward[roundNumber][stageNumber][accounts[i]];
        }
    }

    /// Whether `account` submitted a reward for (round, stage) with any of its peers.
    function hasSubmittedRoundStageReward(uint256 roundNumber, uint256 stageNumber, address account)
        external
        view
        returns (bool)
    {
        if (stageNumber >= STAGES) revert StageOutOfBounds();
        return _accountSubmitted[roundNumber][stageNumber][account];
    }

    /// Whether `peerId` submitted a reward for (round, stage): the check an idempotent sender needs.
    function hasSubmittedRoundStageReward(uint256 roundNumber, uint256 stageNumber, string calldata peerId)
        external
        view
        returns (bool)
    {
        if (stageNumber >= STAGES) revert StageOutOfBounds();
        return _peerSubmitted[roundNumber][stageNumber][peerId];
    }

    function getTotalRewards(string[] calldata peerIds) external view returns (int256[] memory totals) {
        totals = new int256[](peerIds.length);
        for (uint256 i = 0; i < peerIds.length; i++) {
            totals[i] = _totalRewards[peerIds[i]];
        }
    }

    // ---- winner votes ------------------------------------------------------------------

    /// One vote per (round, voter peer): distinct, non-empty winners, from the voter's account.
    function submitWinners(uint256 roundNumber, string[] calldata winners, string calldata peerId) external {
        if (roundNumber > _round) revert InvalidRoundNumber();
        if (_votes[roundNumber][peerId].length != 0) revert WinnerAlreadyVoted();
        if (_eoaOf[peerId] != msg.sender) revert InvalidVoterPeerId();
        if (winners.length == 0) revert InvalidVote();
        for (uint256 i = 0; i < winners.length; i++) {
            for (uint256 j = 0; j < i; j++) {
                if (keccak256(bytes(winners[i])) == keccak256(bytes(winners[j]))) revert InvalidVote();
            }
        }
        for (uint256 i = 0; i < winners.length; i++) {
            string calldata winner = winners[i];
            _votes[roundNumber][peerId].push(winner);
            _roundVotes[roundNumber][winner] += 1;
            uint256 wins = _wins[winner] + 1;
            _wins[winner] = wins;
            if (!_isVotedPeer[winner]) {
                _isVotedPeer[winner] = true;
                _uniqueVotedPeers += 1;
            }
            _rank(_winnerBoard, winner, wins);
        }
        uint256 cast = _voteCount[peerId] + 1;
        _voteCount[peerId] = cast;
        if (!_isVoter[peerId]) {
            _isVoter[peerId] = true;
            _uniqueVoters += 1;
        }
        _rank(_voterBoard, peerId, cast);
        emit WinnerSubmitted(msg.sender, peerId, roundNumber, winners);
    }

    function getTotalWins(string calldata peerId) external view returns (uint256) {
        return _wins[peerId];
    }

    function getVoterVoteCount(string calldata peerId) external view returns (uint256) {
        return _voteCount[peerId];
    }

    function getVoterVotes(uint256 roundNumber, string calldata peerId) external view returns (string[] memory) {
        return _votes[roundNumber][peerId];
    }

    function getPeerVoteCount(uint256 roundNumber, string calldata peerId) external view returns (uint256) {
        return _roundVotes[roundNumber][peerId];
    }

    function uniqueVoters() external view returns (uint256) {
        return _uniqueVoters;
    }

    function uniqueVotedPeers() external view returns (uint256) {
        return _uniqueVotedPeers;
    }

    function voterLeaderboard(uint256 start, uint256 end)
        external
        view
        returns (string[] memory peerIds, uint256[] memory voteCounts)
    {
        return _slice(_voterBoard, start, end);
    }

    function winnerLeaderboard(uint256 start, uint256 end)
        external
        view
        returns (string[] memory peerIds, uint256[] memory wins)
    {
        return _slice(_winnerBoard, start, end);
    }

    /// Entries [start, end) of a board, clamped to its length.
    function _slice(Board storage board, uint256 start, uint256 end)
        private
        view
        returns (string[] memory peers, uint256[] memory scores)
    {
        uint256 n = board.peers.length;
        if (end > n) end = n;
        if (start > end) start = end;
        peers = new string[](end - start);
        scores = new uint256[](end - start);
        for (uint256 i = start; i < end; i++) {
            peers[i - start] = board.peers[i];
            scores[i - start] = board.scores[i];
        }
    }

    /// Sets `peer`'s score on a top-N board (scores only grow) and restores the order.
    function _rank(Board storage board, string memory peer, uint256 score) private {
        bytes32 key = keccak256(bytes(peer));
        uint256 n = board.peers.length;
        uint256 at = n;
        for (uint256 i = 0; i < n; i++) {
            if (keccak256(bytes(board.peers[i])) == key) {
                at = i;
                break;
            }
        }
        if (at == n) {
            if (n < BOARD_SIZE) {
                board.peers.push(peer);
                board.scores.push(score);
            } else if (score > board.scores[n - 1]) {
                at = n - 1;
                board.peers[at] = peer;
                board.scores[at] = score;
            } else {
                return;
            }
        } else {
            board.scores[at] = score;
        }
        while (at > 0 && board.scores[at - 1] < board.scores[at]) {
            // Through memory: a tuple swap of two storage strings aliases them.
            string memory above = board.peers[at - 1];
            board.peers[at - 1] = board.peers[at];
            board.peers[at] = above;
            (board.scores[at - 1], board.scores[at]) = (board.scores[at], board.scores[at - 1]);
            at -= 1;
        }
    }
}
