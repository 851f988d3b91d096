"""Distributed training: the processes ``torchrun`` starts and their process group.

``torchrun --nproc-per-node N -m grasp_fcn_ros.cli train ...`` starts N processes and tells
each its place in environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`start` reads them and joins the
process group: gloo on CPUs, NCCL on CUDA devices (one device per local process). Without them
training is one process and nothing here does anything.
"""

from dataclasses import dataclass
import datetime
import os

import torch
from torch import distributed as dist

#: How long a process waits at a barrier or collective (process 0 validates and writes
#: checkpoints while the others wait).
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes.

    :param rank: index of this process among all (0 writes the logs and checkpoints).
    :param world_size: number of processes.
    :param local_rank: index among the processes of this machine (its CUDA device).
    :param local_world_size: number of processes on this machine (they share its cores).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def main(self):
        """Whether this process writes the logs, checkpoints and summaries."""
        return self.rank == 0

    @property
    def distributed(self):
        """Whether there are other processes."""
        return self.world_size > 1

    @classmethod
    def from_environment(cls, environ=None):
        """The processes ``torchrun`` describes in the environment (one process without)."""
        environ = os.environ if environ is None else environ
        world = int(environ.get('WORLD_SIZE', 1))
        local_world = int(environ.get('LOCAL_WORLD_SIZE', world))
        return cls(int(environ.get('RANK', 0)), world, int(environ.get('LOCAL_RANK', 0)),
                   local_world)


def start(device):
    """Join the process group of the environment's processes, if there are several.

    A process group that is already up (started by the caller) is used as it is.

    :param device: the resolved torch device name of the run (``cpu``, ``cuda``, ``cuda:N``).
    :returns: ``(processes, device)``: :class:`Processes`, and this process's device
        (``cuda:<local rank>`` on CUDA).
    """
    processes = Processes.from_environment()
    if not processes.distributed:
        return processes, device
    cuda = torch.device(device).type == 'cuda'
    if cuda:
        device = f'cuda:{processes.local_rank}'
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if cuda:
            dist.init_process_group('nccl', timeout=TIMEOUT, device_id=torch.device(device))
        else:
            dist.init_process_group('gloo', timeout=TIMEOUT)
    return processes, device


def finish():
    """Leave the process group (at the end of the command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(processes):
    """Wait for every process (nothing to do in a single process)."""
    if processes.distributed:
        dist.barrier()


def sum_over_processes(values, processes, device='cpu'):
    """Element-wise sums of a list of numbers over all processes (float64)."""
    if not processes.distributed:
        return [float(v) for v in values]
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def available_cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_process(processes, threads=0):
    """Intra-op threads of one training process: ``threads`` when positive, else the cores
    this process may use shared evenly among the processes of its machine."""
    if threads > 0:
        return threads
    return max(1, available_cores() // processes.local_world_size)
